"""Pretraining the ensemble on zero-cost metrics, and the shareable pretrained file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
import pytest
import torch

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.pretraining_set import PretrainingSet
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.surrogate import SearchSpaceMismatchError
from optuna_deepens.surrogate import SurrogateFileError
from optuna_deepens.surrogate import pretrain

OPS = ("none", "skip", "conv1", "conv3", "pool")
N_EDGES = 6
COST = {"none": 0.0, "skip": 0.0, "conv1": 1.0, "conv3": 9.0, "pool": 0.2}


def cell_space(trial) -> list[str]:
    return [trial.suggest_categorical(f"edge{i}", OPS) for i in range(N_EDGES)]


def cell_metrics(ops: list[str]) -> dict[str, float]:
    """NAS-like zero-cost metrics: sizes that add up over edges, a latency that does not."""
    params = 1.0 + sum(COST[op] * (1 + i % 3) for i, op in enumerate(ops))
    return {
        "params": params,
        "flops": 50.0 * params + 3.0 * sum(op == "pool" for op in ops),
        "latency_ms": 0.5 + 0.1 * sum(op != "none" for op in ops) + 0.02 * params,
    }


def cell_table(n: int, seed: int) -> PretrainingSet:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n):
        ops = [OPS[int(i)] for i in rng.integers(len(OPS), size=N_EDGES)]
        records.append({**{f"edge{i}": op for i, op in enumerate(ops)}, **cell_metrics(ops)})
    return PretrainingSet.from_records(records, search_space=cell_space)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def held_out_errors(seed: int) -> dict[str, tuple[float, float, float]]:
    """Per metric, on 300 unseen cells: (MSE before, MSE after, Spearman after) pretraining.

    ``seed`` seeds pretraining and the ensembles (the untrained one too). Also run for seeds
    0-19 by ``benchmarks/quality_margins_models.py``.
    """
    train, held_out = cell_table(600, seed=0), cell_table(300, seed=1)
    encoder = SearchSpaceEncoder(train.distributions)
    rows = held_out.rows(encoder)
    untrained = pretrain(train, n_steps=1, seed=seed).ensemble(
        ("objective", *train.metric_names), config=EnsembleConfig(), seed=seed
    )
    surrogate = pretrain(train, n_steps=1500, seed=seed)
    trained = surrogate.ensemble(
        ("objective", *train.metric_names), config=EnsembleConfig(), seed=seed
    )
    errors = {}
    for name in train.metric_names:
        truth = rows.targets[name]
        before = np.mean((untrained.predict(rows.features, name).mean(0) - truth) ** 2)
        predicted = trained.predict(rows.features, name).mean(0)
        after = np.mean((predicted - truth) ** 2)
        errors[name] = (float(before), float(after), _spearman(predicted, truth))
    return errors


def test_pretrained_heads_predict_metrics_of_unseen_architectures() -> None:
    errors = held_out_errors(seed=0)
    assert set(errors) == {"flops", "latency_ms", "params"}
    # Seeds 0-19 (benchmarks/results/quality_margins_models.md): after / before at most
    # 0.0018 for every metric, Spearman at least 0.999.
    for name, (before, after, rank) in errors.items():
        assert after < 0.1 * before, name  # The loss falls on architectures never seen.
        assert rank > 0.9, name


def sequential_rank_correlations(seed: int) -> dict[str, float]:
    """Spearman per metric on 200 unseen cells after sequential pretraining seeded ``seed``."""
    train, held_out = cell_table(400, seed=0), cell_table(200, seed=1)
    surrogate = pretrain(train, mode="sequential", n_steps=900, seed=seed)
    assert surrogate.mode == "sequential"
    rows = held_out.rows(SearchSpaceEncoder(train.distributions))
    ensemble = surrogate.ensemble(
        ("objective", *train.metric_names), config=EnsembleConfig(), seed=seed
    )
    return {
        name: _spearman(ensemble.predict(rows.features, name).mean(0), rows.targets[name])
        for name in train.metric_names
    }


def test_sequential_mode_trains_every_head_too() -> None:
    ranks = sequential_rank_correlations(seed=0)
    # Learnt in turn (flops, latency_ms, params), each head keeps what it learnt. Seeds 0-19
    # (benchmarks/results/quality_margins_models.md): latency_ms 0.960-0.964, flops and
    # params above 0.998.
    assert set(ranks) == {"flops", "latency_ms", "params"}
    for name, rank in ranks.items():
        assert rank > 0.8, name
    train = cell_table(400, seed=0)
    with pytest.raises(ValueError, match="mode='both'"):
        pretrain(train, mode="both")


def test_saved_file_loads_safely_and_predicts_the_same(tmp_path: Path) -> None:
    surrogate = pretrain(cell_table(200, seed=0), n_steps=200, seed=0)
    path = tmp_path / "surrogate.pt"
    surrogate.save(path)
    # weights_only=True succeeds: the file holds tensors, numbers and JSON text only.
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload["metadata"], str)
    loaded = PretrainedSurrogate.load(path)
    assert loaded.distributions == surrogate.distributions
    assert loaded.metric_names == surrogate.metric_names
    assert loaded.pretraining_set.params == surrogate.pretraining_set.params
    features = SearchSpaceEncoder(surrogate.distributions).encode(
        SearchSpaceEncoder(surrogate.distributions).to_internal(loaded.pretraining_set.params[:20])
    )
    heads = ("objective", *surrogate.metric_names)
    a = surrogate.ensemble(heads, config=EnsembleConfig(), seed=0).predict(features, "flops")
    b = loaded.ensemble(heads, config=EnsembleConfig(), seed=0).predict(features, "flops")
    np.testing.assert_allclose(a, b)


def test_file_from_another_space_is_refused(tmp_path: Path) -> None:
    surrogate = pretrain(cell_table(100, seed=0), n_steps=50, seed=0)
    surrogate.save(tmp_path / "cells.pt")
    loaded = PretrainedSurrogate.load(tmp_path / "cells.pt")

    def other_space(trial) -> list[str]:
        return [trial.suggest_categorical(f"edge{i}", OPS[:4]) for i in range(N_EDGES)]

    with pytest.raises(SearchSpaceMismatchError, match=r"another search space.*edge0"):
        DeepEnsembleSampler(search_space=other_space, pretrained=loaded)

    # Without a search_space function the study's own parameters are checked at the first trial.
    study = optuna.create_study(sampler=DeepEnsembleSampler(pretrained=loaded, seed=0))
    with pytest.raises(SearchSpaceMismatchError, match="lr"):
        study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=2)

    (tmp_path / "not_a_surrogate.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not a pretrained surrogate"):
        PretrainedSurrogate.load(tmp_path / "not_a_surrogate.pt")


def test_pretrained_sampler_searches_and_keeps_training_metric_heads() -> None:
    surrogate = pretrain(cell_table(300, seed=0), n_steps=300, seed=0)
    sampler = DeepEnsembleSampler(
        search_space=cell_space, pretrained=surrogate, n_startup_trials=5, seed=0
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        ops = cell_space(trial)
        for key, value in cell_metrics(ops).items():
            trial.set_user_attr(f"zc_{key}", value)
        return float(sum(op == "conv3" for op in ops))

    study.optimize(objective, n_trials=12)
    sources = [t.user_attrs["deepens_source"] for t in study.trials]
    assert sources == ["startup"] * 5 + ["model"] * 7
    assert sampler._fitter.ensemble is not None
    assert sampler._fitter.ensemble.head_names == ("objective", "flops", "latency_ms", "params")
    predictions = sampler.predict_objective([{f"edge{i}": "conv3" for i in range(N_EDGES)}])
    assert predictions.shape == (6, 1)


def test_space_distributions_are_recorded() -> None:
    table = cell_table(50, seed=0)
    assert table.distributions["edge0"] == CategoricalDistribution(OPS)


def _damage(payload: dict, how: str) -> object:
    metadata = json.loads(payload["metadata"])
    if how == "metadata not json":
        payload["metadata"] = "{not json"
    elif how == "metadata a list":
        payload["metadata"] = "[1, 2]"
    elif how == "other version":
        payload["metadata"] = json.dumps({**metadata, "version": 99})
    elif how == "no pretraining set":
        payload["metadata"] = json.dumps(
            {k: v for k, v in metadata.items() if k != "pretraining_set"}
        )
    elif how == "bad distribution":
        metadata["distributions"]["edge0"] = "not a distribution"
        payload["metadata"] = json.dumps(metadata)
    elif how == "weights of another shape":
        state = dict(payload["ensemble"])
        config = dict(state["config"])
        config["head_size"] = config["head_size"] + 1
        state["config"] = config
        payload["ensemble"] = state
    elif how == "no weights":
        del payload["ensemble"]
    elif how == "not a dict":
        return [payload]
    return payload


@pytest.mark.parametrize(
    "how",
    [
        "metadata not json",
        "metadata a list",
        "other version",
        "no pretraining set",
        "bad distribution",
        "weights of another shape",
        "no weights",
        "not a dict",
    ],
)
def test_every_malformed_file_raises_one_clear_error(tmp_path: Path, how: str) -> None:
    path = tmp_path / "surrogate.pt"
    pretrain(cell_table(60, seed=0), n_steps=20, seed=0).save(path)
    torch.save(_damage(torch.load(path, weights_only=True), how), path)
    with pytest.raises(SurrogateFileError, match="(?i)pretrain again"):
        PretrainedSurrogate.load(path)


def test_a_pickle_that_would_run_code_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"metadata": "{}", "ensemble": PretrainingSet}, path)  # Needs a class: pickle.
    with pytest.raises(SurrogateFileError, match="not a pretrained surrogate"):
        PretrainedSurrogate.load(path)

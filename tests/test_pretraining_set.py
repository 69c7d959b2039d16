"""The pretraining set: sampling, measuring, caching, resuming, and tables from elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.distributions import IntDistribution
import pytest
import torch

from optuna_deepens import zero_cost
from optuna_deepens.pretraining_set import CacheError
from optuna_deepens.pretraining_set import PretrainingSet
from optuna_deepens.pretraining_set import build_pretraining_set

EXAMPLE = torch.zeros(1, 3, 8, 8)
FAST = {"min_run_time": 0.005, "warmup": 1}


def conv_space(trial) -> tuple[int, int]:
    depth = trial.suggest_int("depth", 1, 3)
    width = trial.suggest_categorical("width", [4, 8, 16])
    return depth, width


def build_conv(config: tuple[int, int]) -> torch.nn.Module:
    depth, width = config
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, width, 3, padding=1)]
    for _ in range(depth - 1):
        layers += [torch.nn.ReLU(), torch.nn.Conv2d(width, width, 3, padding=1)]
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.LazyLinear(10))


def conv_params(depth: int, width: int) -> float:
    """Hand count: first conv, (depth - 1) more convs, and the classifier on width*8*8."""
    first = 3 * width * 9 + width
    others = (depth - 1) * (width * width * 9 + width)
    return float(first + others + width * 64 * 10 + 10)


def build_materialised(config: tuple[int, int]) -> torch.nn.Module:
    model = build_conv(config)
    model(EXAMPLE)  # Materialise the lazy classifier before counting.
    return model


def test_every_architecture_measured_with_exact_params(tmp_path: Path) -> None:
    table = build_pretraining_set(
        conv_space,
        build_materialised,
        EXAMPLE,
        n_architectures=50,  # More than the 9 the space holds: all of them, each once.
        cache=tmp_path / "cache.jsonl",
        metrics=("params", "flops"),
        n_workers=1,
        show_progress_bar=False,
    )
    assert len(table) == 9
    assert {(p["depth"], p["width"]) for p in table.params} == {
        (d, w) for d in (1, 2, 3) for w in (4, 8, 16)
    }
    for params, count in zip(table.params, table.metrics["params"]):
        assert count == conv_params(params["depth"], params["width"])
    assert table.distributions == {
        "depth": IntDistribution(1, 3),
        "width": CategoricalDistribution([4, 8, 16]),
    }


def test_cache_round_trip_and_resume_after_a_torn_write(tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    options = dict(metrics=("params",), n_workers=1, show_progress_bar=False)
    first = build_pretraining_set(
        conv_space, build_materialised, EXAMPLE, n_architectures=6, cache=cache, **options
    )
    lines = cache.read_text().splitlines()
    assert len(lines) == 1 + 6  # Header and one row per architecture.
    # A killed run: the last row half written. The resumed run drops it and measures it again.
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])
    calls: list[tuple[int, int]] = []

    def counting_builder(config: tuple[int, int]) -> torch.nn.Module:
        calls.append(config)
        return build_materialised(config)

    counting_builder.__qualname__ = build_materialised.__qualname__  # Same builder identity.
    counting_builder.__module__ = build_materialised.__module__
    again = build_pretraining_set(
        conv_space, counting_builder, EXAMPLE, n_architectures=6, cache=cache, **options
    )
    assert len(calls) == 1  # Only the torn row was measured again.
    assert again.params == first.params
    np.testing.assert_array_equal(again.metrics["params"], first.metrics["params"])
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_stale_cache_is_refused_with_the_fix(tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    options = dict(metrics=("params",), n_workers=1, show_progress_bar=False)
    build_pretraining_set(
        conv_space, build_materialised, EXAMPLE, n_architectures=3, cache=cache, **options
    )

    def wider_space(trial) -> tuple[int, int]:
        return trial.suggest_int("depth", 1, 3), trial.suggest_categorical("width", [4, 8, 32])

    with pytest.raises(CacheError, match=r"another setting.*space_sha256.*Delete it"):
        build_pretraining_set(
            wider_space, build_materialised, EXAMPLE, n_architectures=3, cache=cache, **options
        )
    with pytest.raises(CacheError, match="input_shape"):
        build_pretraining_set(
            conv_space,
            build_materialised,
            torch.zeros(1, 3, 16, 16),
            n_architectures=3,
            cache=cache,
            **options,
        )


def test_measure_options_given_either_way_share_a_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    options = dict(metrics=("params",), n_workers=1, show_progress_bar=False, n_architectures=3)
    build_pretraining_set(
        conv_space, build_materialised, EXAMPLE, cache=cache, measure_options=FAST, **options
    )
    header = json.loads(cache.read_text().splitlines()[0])
    assert header["measure_options"] == {"min_run_time": 0.005, "warmup": 1}

    def failing_builder(config: tuple[int, int]) -> torch.nn.Module:
        raise AssertionError("everything is cached: nothing is built")

    failing_builder.__qualname__ = build_materialised.__qualname__  # Same builder identity.
    same = zero_cost.MeasureOptions(n_threads=1, **FAST)  # n_threads=1 is the default.
    build_pretraining_set(
        conv_space, failing_builder, EXAMPLE, cache=cache, measure_options=same, **options
    )
    with pytest.raises(CacheError, match="measure_options"):
        build_pretraining_set(conv_space, build_materialised, EXAMPLE, cache=cache, **options)
    with pytest.raises(ValueError, match="warmup must be at least 0"):
        build_pretraining_set(
            conv_space, build_materialised, EXAMPLE, measure_options={"warmup": -1}, **options
        )


def test_damaged_cache_names_the_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    options = dict(metrics=("params",), n_workers=1, show_progress_bar=False)
    build_pretraining_set(
        conv_space, build_materialised, EXAMPLE, n_architectures=3, cache=cache, **options
    )
    lines = cache.read_text().splitlines()
    lines[1] = "{not json"
    cache.write_text("\n".join(lines) + "\n")
    with pytest.raises(CacheError, match="Line 2 .* damaged"):
        build_pretraining_set(
            conv_space, build_materialised, EXAMPLE, n_architectures=3, cache=cache, **options
        )
    cache.write_text("garbage\n")
    with pytest.raises(CacheError, match="not a pretraining cache"):
        build_pretraining_set(
            conv_space, build_materialised, EXAMPLE, n_architectures=3, cache=cache, **options
        )


def test_failing_architectures_are_kept_out_and_reported(tmp_path: Path) -> None:
    def fragile(config: tuple[int, int]) -> torch.nn.Module:
        if config[1] == 16:
            raise RuntimeError("width 16 does not fit")
        return build_materialised(config)

    with pytest.warns(UserWarning, match=r"3 of 9 architectures failed.*width 16 does not fit"):
        table = build_pretraining_set(
            conv_space,
            fragile,
            EXAMPLE,
            n_architectures=9,
            cache=tmp_path / "cache.jsonl",
            metrics=("params",),
            n_workers=1,
            show_progress_bar=False,
        )
    assert len(table) == 6 and all(p["width"] != 16 for p in table.params)

    def broken(config: tuple[int, int]) -> torch.nn.Module:
        raise RuntimeError("nothing builds")

    with pytest.raises(zero_cost.ModelMeasurementError, match="None of the 9.*nothing builds"):
        build_pretraining_set(
            conv_space,
            broken,
            EXAMPLE,
            n_architectures=9,
            metrics=("params",),
            n_workers=1,
            show_progress_bar=False,
        )


def test_parallel_workers_give_the_same_table_as_one() -> None:
    options = dict(n_architectures=9, metrics=("params", "flops"), show_progress_bar=False, seed=3)
    serial = build_pretraining_set(conv_space, build_materialised, EXAMPLE, n_workers=1, **options)
    parallel = build_pretraining_set(
        conv_space, build_materialised, EXAMPLE, n_workers=2, measure_options=FAST, **options
    )
    assert serial.params == parallel.params
    for name in ("params", "flops"):
        np.testing.assert_array_equal(serial.metrics[name], parallel.metrics[name])


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown metrics.*accuracy"):
        build_pretraining_set(conv_space, build_conv, EXAMPLE, metrics=("accuracy",))


def test_table_from_another_framework_via_csv(tmp_path: Path) -> None:
    path = tmp_path / "measured_elsewhere.csv"
    path.write_text("depth,width,params,latency_ms\n1,4,100,0.5\n3,16,900,\n2,8,400,1.0\n")
    table = PretrainingSet.from_csv(path, search_space=conv_space)
    assert table.params == (
        {"depth": 1, "width": 4},
        {"depth": 3, "width": 16},
        {"depth": 2, "width": 8},
    )
    assert table.metric_names == ("latency_ms", "params")
    np.testing.assert_array_equal(table.metrics["params"], [100, 900, 400])
    assert np.isnan(table.metrics["latency_ms"][1])  # An empty cell is a missing metric.


@pytest.mark.parametrize(
    "content, match",
    [
        (b"depth,width,params\n1.6,4,100\n", r"line 2, column 'depth': '1.6' is not a whole"),
        (b"depth,width,params\n1,4,100\n2,8,many\n", r"line 3, column 'params'"),
        (b"depth,width,params\n1,4,\xff\n", "cannot read the pretraining CSV"),
    ],
)
def test_a_bad_csv_cell_names_the_file_line_and_column(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as error:
        PretrainingSet.from_csv(path, search_space=conv_space)
    assert str(path) in str(error.value)


def test_csv_explores_the_search_space_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna_deepens import pretraining_set

    explore = pretraining_set.explore
    calls = []

    def counting_explore(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return explore(*args, **kwargs)

    monkeypatch.setattr(pretraining_set, "explore", counting_explore)
    path = tmp_path / "measured_elsewhere.csv"
    path.write_text("depth,width,params\n1,4,100\n")
    assert PretrainingSet.from_csv(path, search_space=conv_space).params == (
        {"depth": 1, "width": 4},
    )
    assert len(calls) == 1


def test_records_outside_the_space_are_refused() -> None:
    with pytest.raises(ValueError, match="Record 0 .* not an architecture of the search space"):
        PretrainingSet.from_records(
            [{"depth": 1, "width": 5, "params": 3.0}], search_space=conv_space
        )
    with pytest.raises(ValueError, match="negative or infinite"):
        PretrainingSet.from_records(
            [{"depth": 1, "width": 4, "params": -3.0}], search_space=conv_space
        )


def test_a_shipped_search_space_feeds_pretraining_and_the_sampler() -> None:
    import optuna

    from optuna_deepens import DeepEnsembleSampler
    from optuna_deepens import pretrain
    from search_spaces import nasbench201

    example = torch.zeros(1, 3, 32, 32)
    table = build_pretraining_set(
        nasbench201.suggest,
        nasbench201.build,
        example,
        n_architectures=6,
        metrics=("params", "flops"),
        n_workers=1,
        show_progress_bar=False,
    )
    for params, count in zip(table.params, table.metrics["params"]):
        model = nasbench201.build(
            nasbench201.NB201Config(tuple(params[n] for n in nasbench201.EDGE_NAMES))
        )
        assert count == sum(p.numel() for p in model.parameters() if p.requires_grad)
    surrogate = pretrain(table, n_steps=20)
    sampler = DeepEnsembleSampler(
        search_space=nasbench201.suggest, pretrained=surrogate, n_startup_trials=3, seed=0
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: float(nasbench201.suggest(t).ops.count("nor_conv_3x3")), n_trials=5)
    assert [t.user_attrs["deepens_source"] for t in study.trials][3:] == ["model", "model"]


def test_builders_with_bound_options_have_a_stable_identity() -> None:
    import functools

    from optuna_deepens.pretraining_set import callable_identity

    wide = functools.partial(build_conv, num_classes=10)
    assert callable_identity(wide) == callable_identity(
        functools.partial(build_conv, num_classes=10)
    )
    assert callable_identity(wide) != callable_identity(
        functools.partial(build_conv, num_classes=5)
    )
    assert callable_identity(build_conv).endswith("test_pretraining_set.build_conv")

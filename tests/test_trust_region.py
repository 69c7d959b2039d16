"""The edit-distance trust region: its radius schedule and how the sampler searches inside it."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
import pytest
import synthetic

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig
from optuna_deepens import MultiFidelity
from optuna_deepens import TrustRegion

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAST = EnsembleConfig(cold_steps=60, warm_steps=8)
CHOICES = (0, 1, 2, 3, 4)
NAMES = tuple(f"x{i}" for i in range(6))


def _cell(trial: optuna.Trial) -> float:
    return -sum((trial.suggest_categorical(n, CHOICES) - 2) ** 2 for n in NAMES)


def _edits(a: dict, b: dict) -> int:
    return sum(a.get(k) != b.get(k) for k in set(a) | set(b))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0),
        ([1.0], 3),
        ([1.0, 2.0, 3.0], 3),  # Improving: full radius.
        ([3.0] + [1.0] * 9, 3),  # 9 failures < patience 10.
        ([3.0] + [1.0] * 10, 2),
        ([3.0] + [1.0] * 25, 1),
        ([3.0] + [1.0] * 30, 0),  # Exhausted: global search.
        ([3.0] + [1.0] * 30 + [4.0], 3),  # An improvement resets the radius.
        ([3.0] + [3.0] * 10, 2),  # A tie is no improvement.
        ([np.nan, 3.0] + [np.nan] * 20, 3),  # Non-finite values are not trials of the objective.
    ],
)
def test_radius_schedule(values: list[float], expected: int) -> None:
    assert TrustRegion(max_radius=3, patience=10).radius(np.array(values)) == expected


@pytest.mark.parametrize("kwargs", [{"max_radius": 0}, {"patience": 0}])
def test_invalid_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TrustRegion(**kwargs)


@pytest.mark.parametrize("kwargs", [{"max_radius": 1.5}, {"patience": 2.5}, {"max_radius": "3"}])
def test_a_radius_or_patience_that_is_not_whole_is_refused(kwargs: dict) -> None:
    with pytest.raises(TypeError, match="expected an int"):
        TrustRegion(**kwargs)


def _study_with_history(values: list[float], best_index: int) -> optuna.Study:
    """Complete trials with known values; the best one is all 2s."""
    study = optuna.create_study(direction="maximize")
    space = {n: CategoricalDistribution(CHOICES) for n in NAMES}
    rng = np.random.default_rng(0)
    for i, value in enumerate(values):
        params = (
            {n: 2 for n in NAMES}
            if i == best_index
            else {n: int(rng.choice([0, 1, 3, 4])) for n in NAMES}
        )
        study.add_trial(create_trial(params=params, distributions=space, value=value))
    return study


def test_radius_from_stored_trials_bounds_the_proposal() -> None:
    # 15 trials, the best third: 12 failures, so radius 3 - 12 // 10 = 2 with the default.
    values = [-10.0, -8.0, 0.0] + [-9.0] * 12
    study = _study_with_history(values, best_index=2)
    study.sampler = DeepEnsembleSampler(seed=1, ensemble_config=FAST, trust_region=TrustRegion())
    study.optimize(_cell, n_trials=1)
    trial = study.trials[-1]
    assert trial.user_attrs["deepens_source"] == "model"
    assert trial.user_attrs["deepens_trust_radius"] == 2
    assert 1 <= _edits(trial.params, {n: 2 for n in NAMES}) <= 2


def region_search(seed: int, ensemble_config: EnsembleConfig = FAST) -> optuna.Study:
    """30 trials on ``_cell``, 5 of them startup, with the trust region.

    Also run for seeds 0-19 by ``benchmarks/quality_margins_models.py``, and with an untrained
    ensemble (a broken model) to see what the test's check must tell apart.
    """
    sampler = DeepEnsembleSampler(
        seed=seed, n_startup_trials=5, ensemble_config=ensemble_config, trust_region=TrustRegion()
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_cell, n_trials=30)
    return study


def model_rank_of_all_cells(study: optuna.Study) -> float:
    """Spearman of the sampler's last fit against ``_cell`` on all 5**6 cells."""
    cells = [dict(zip(NAMES, c)) for c in itertools.product(CHOICES, repeat=len(NAMES))]
    truth = np.array([-sum((v - 2) ** 2 for v in cell.values()) for cell in cells], dtype=float)
    predicted = study.sampler.predict_objective(cells).mean(axis=0)
    ranks = [np.argsort(np.argsort(v)) for v in (predicted, truth)]
    return float(np.corrcoef(*ranks)[0, 1])


def test_search_stays_within_the_radius_of_the_incumbent() -> None:
    study = region_search(seed=3)
    region_trials = [t for t in study.trials if "deepens_trust_radius" in t.user_attrs]
    assert len(region_trials) >= 20  # 25 for each of seeds 0-19.
    for trial in region_trials:
        earlier = [t for t in study.trials if t.number < trial.number and t.value is not None]
        incumbent = max(earlier, key=lambda t: t.value)  # First of ties, like the sampler.
        radius = trial.user_attrs["deepens_trust_radius"]
        assert 1 <= _edits(trial.params, incumbent.params) <= radius
    # Measured over seeds 0-19 (benchmarks/results/quality_margins_models.md): the best value
    # rose above the startup's by 1-13, but by 1 only for seed 1, and an untrained ensemble
    # (a broken model) also raised it on 19 of 20 seeds, seed 3 included: a check of that had
    # no room and told nothing. Instead: the region's proposals beat the 5 random startup
    # draws on average (by 2.8-9.4; fails for a region that proposes no better than random,
    # e.g. around the wrong trial or ranking candidates upside down), and the model steering
    # it ranks all 5**6 cells (Spearman 0.50-0.76; untrained -0.36 to 0.37, seed 3: 0.04).
    region_mean = np.mean([t.value for t in region_trials])
    assert region_mean > np.mean([t.value for t in study.trials[:5]]) + 1.0
    assert model_rank_of_all_cells(study) > 0.3


def exhausted_region_search(seed: int) -> optuna.Study:
    """Two parameters of three choices: the incumbent has 4 one-edit neighbours. Radius 1 with
    a long patience keeps the region on; once it is used up, proposals must go elsewhere."""

    def objective(trial: optuna.Trial) -> float:
        return -sum(abs(trial.suggest_categorical(n, (0, 1, 2)) - 1) for n in ("a", "b"))

    sampler = DeepEnsembleSampler(
        seed=seed,
        n_startup_trials=2,
        ensemble_config=FAST,
        trust_region=TrustRegion(max_radius=1, patience=100),
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=9)
    return study


def test_an_exhausted_region_falls_back_to_global_search() -> None:
    study = exhausted_region_search(seed=0)
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == 9  # All nine cells, none twice (so for seeds 0-19).
    in_region = ["deepens_trust_radius" in t.user_attrs for t in study.trials[2:]]
    assert any(in_region) and not all(in_region)  # Seeds 0-19: 3-5 of the 7 in the region.


def conditional_region_search(seed: int) -> optuna.Study:
    sampler = DeepEnsembleSampler(
        seed=seed,
        n_startup_trials=6,
        ensemble_config=FAST,
        search_space=synthetic.suggest,
        trust_region=TrustRegion(),
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(synthetic.objective, n_trials=20)
    return study


def test_conditional_space_keeps_exact_branches_inside_the_region() -> None:
    study = conditional_region_search(seed=0)
    region = [t for t in study.trials if "deepens_trust_radius" in t.user_attrs]
    assert region  # 14 of the 20 trials for each of seeds 0-19.
    for trial in region:
        branch = {"heads", "attn_dim"} if trial.params["block"] == "attn" else {"kernel"}
        other = {"kernel"} if trial.params["block"] == "attn" else {"heads", "attn_dim"}
        assert branch <= set(trial.params) and not other & set(trial.params)


@pytest.mark.parametrize(
    "options",
    [
        {},  # Off by default.
        {"trust_region": TrustRegion(), "multi_fidelity": MultiFidelity(low_step=3, full_step=12)},
    ],
)
def test_disabled_without_option_or_with_multi_fidelity(options: dict) -> None:
    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=4, ensemble_config=FAST, **options)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_cell, n_trials=10)
    assert not any("deepens_trust_radius" in t.user_attrs for t in study.trials)
    sources = {t.user_attrs.get("deepens_source") for t in study.trials}
    assert "model" in sources or "promotion" in sources


def distinct_region_search(seed: int) -> optuna.Study:
    sampler = DeepEnsembleSampler(
        seed=seed, n_startup_trials=4, ensemble_config=FAST, trust_region=TrustRegion()
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_cell, n_trials=25)
    return study


def test_every_architecture_is_distinct_while_the_region_is_used() -> None:
    study = distinct_region_search(seed=5)
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == len(keys)
    # Seeds 0-19: 25 distinct architectures, 21 of them proposed in the region.
    assert any("deepens_trust_radius" in t.user_attrs for t in study.trials)

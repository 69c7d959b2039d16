"""Behaviour of DeepEnsembleSampler in studies: optima found, directions, errors, attrs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import IntDistribution
import pytest
import synthetic

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import SearchSpaceError
from optuna_deepens import TrustRegion

optuna.logging.set_verbosity(optuna.logging.WARNING)

OPS = ("a", "b", "c", "d", "e")
OP_VALUES = {"a": 0.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 0.5}


def additive(trial: optuna.Trial) -> float:
    """Six categorical edges; the maximum, 18, has every edge at "c"."""
    return sum(OP_VALUES[trial.suggest_categorical(f"e{i}", OPS)] for i in range(6))


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_finds_the_optimum_in_either_direction(direction: str) -> None:
    sign = 1.0 if direction == "maximize" else -1.0
    study = optuna.create_study(direction=direction, sampler=DeepEnsembleSampler(seed=0))
    study.optimize(lambda t: sign * additive(t), n_trials=80)
    # 5**6 = 15,625 architectures. Over seeds 0-19 the optimum came after 22-60 trials
    # (median 36; benchmarks/results/quality_margins.md), so 80 leaves room for another CPU.
    assert study.best_value == sign * 18.0


def branched(trial: optuna.Trial) -> float:
    """Three edges and a block whose parameters exist on one branch only.

    The maximum, 12, needs every edge at "c", block="attn" and heads=4; the best convolution
    scores 10. 5**3 * (3 + 4) = 875 architectures.
    """
    value = sum(OP_VALUES[trial.suggest_categorical(f"e{i}", OPS)] for i in range(3))
    if trial.suggest_categorical("block", ["conv", "attn"]) == "conv":
        return value + {3: 0.0, 5: 1.0, 7: 0.5}[trial.suggest_int("kernel", 3, 7, step=2)]
    return (
        value + {1: 0.0, 2: 1.0, 4: 3.0, 8: 1.5}[trial.suggest_categorical("heads", [1, 2, 4, 8])]
    )


def suggest_branched(trial: optuna.Trial) -> None:
    branched(trial)  # Cheap here; a real search_space function only calls suggest_*.


@pytest.mark.parametrize("with_search_space", [True, False])
def test_conditional_optimum_needs_a_conditional_branch(with_search_space: bool) -> None:
    space = suggest_branched if with_search_space else None
    sampler = DeepEnsembleSampler(seed=0, search_space=space)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(branched, n_trials=50)
    # Over seeds 0-19 the optimum came after 14-25 trials with search_space, 14-28 without.
    assert study.best_value == 12.0
    assert study.best_params["block"] == "attn" and study.best_params["heads"] == 4


def test_without_search_space_conditional_parameters_are_still_modelled() -> None:
    """The ensemble's guided trials reach both branches' parameters, and the relative space
    is their union. The default GP models them too (the branched optimum above, reached
    without ``search_space`` on every seed; each branch's floor of trials is checked in
    tests/test_local_search.py); this runs the other surrogate of such spaces."""
    sampler = DeepEnsembleSampler(seed=1, numeric_surrogate="ensemble")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(synthetic.objective, n_trials=40)
    model_trials = [t for t in study.trials if t.user_attrs.get("deepens_source") == "model"]
    assert any("heads" in t.params for t in model_trials)
    assert any("kernel" in t.params for t in model_trials)
    space = study.sampler.infer_relative_search_space(study, study.trials[-1])
    assert {"heads", "attn_dim", "kernel"} <= set(space)  # The union, not the intersection.


def _run(seed: int, n_trials: int, objective=additive) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=DeepEnsembleSampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return [t.params for t in study.trials]


def test_same_seed_same_study_and_other_seed_other_study() -> None:
    first, second, other = _run(3, 15), _run(3, 15), _run(4, 15)
    assert first == second
    assert first != other


def test_no_architecture_is_proposed_twice() -> None:
    # 3**3 = 27 architectures: 27 trials must visit each one exactly once.
    def tiny(trial: optuna.Trial) -> float:
        return sum(OP_VALUES[trial.suggest_categorical(f"e{i}", OPS[:3])] for i in range(3))

    keys = [tuple(sorted(p.items())) for p in _run(0, 27, tiny)[1:]]
    assert len(set(keys)) == len(keys)


def test_model_chosen_trials_explain_themselves_in_user_attrs() -> None:
    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=5, acquisition="pi")
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: -additive(t), n_trials=8)
    startup, model = study.trials[1:5], study.trials[5:]
    assert all(t.user_attrs["deepens_source"] == "startup" for t in startup)
    for trial in model:
        attrs = trial.user_attrs
        assert attrs["deepens_source"] == "model"
        assert attrs["deepens_acquisition_function"] == "pi"
        assert 0.0 <= attrs["deepens_acquisition"] <= 1.0
        assert attrs["deepens_predicted_std"] > 0.0
        assert -18.0 - 5 < attrs["deepens_predicted_mean"] < 5  # Minimised: negated back.


@pytest.mark.parametrize("acquisition", ["pi", "ei", "ucb"])
def test_other_acquisitions_run(acquisition: str) -> None:
    sampler = DeepEnsembleSampler(seed=0, acquisition=acquisition, n_startup_trials=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(additive, n_trials=12)
    assert study.trials[-1].user_attrs["deepens_acquisition_function"] == acquisition
    assert study.best_value >= 7.0  # Over seeds 0-19: 9-16 (quality_margins.md).


def test_failed_nan_and_infinite_trials_never_crash_the_study() -> None:
    def flaky(trial: optuna.Trial) -> float:
        value = additive(trial)
        if trial.number % 5 == 1:
            raise RuntimeError("model failed to build")
        if trial.number % 5 == 2:
            return math.nan
        if trial.number % 5 == 3:
            return math.inf
        return value

    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    with pytest.warns(UserWarning, match="infinite value"):
        study.optimize(flaky, n_trials=25, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 10  # Exceptions and NaN values.
    assert any(t.user_attrs.get("deepens_source") == "model" for t in study.trials)


def test_all_trials_failing_is_reported() -> None:
    def broken(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("out of memory")

    study = optuna.create_study(sampler=DeepEnsembleSampler(seed=0, n_startup_trials=3))
    with pytest.warns(UserWarning, match="All 3 finished trials failed"):
        study.optimize(broken, n_trials=4, catch=(RuntimeError,))


def test_unsupported_distribution_is_sampled_at_random_with_a_warning() -> None:
    class Custom(BaseDistribution):
        """A distribution type Optuna's storage accepts but the encoder does not know."""

        def to_external_repr(self, param_value_in_internal_repr: float) -> float:
            return param_value_in_internal_repr

        def to_internal_repr(self, param_value_in_external_repr: float) -> float:
            return param_value_in_external_repr

        def single(self) -> bool:
            return False

        def _contains(self, param_value_in_internal_repr: float) -> bool:
            return True

    study = optuna.create_study(sampler=DeepEnsembleSampler(seed=0))
    for i in range(2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5 * i, "y": i},
                distributions={"x": Custom(), "y": IntDistribution(0, 1)},
                value=float(i),
            )
        )
    with pytest.warns(UserWarning, match="cannot model parameter 'x'"):
        space = study.sampler.infer_relative_search_space(study, study.trials[-1])
    assert set(space) == {"y"}


def test_bad_search_space_function_names_the_fix() -> None:
    def trains(trial: optuna.Trial) -> None:
        trial.suggest_int("depth", 1, 3)
        raise RuntimeError("CUDA out of memory")

    study = optuna.create_study(sampler=DeepEnsembleSampler(search_space=trains))
    with pytest.raises(SearchSpaceError, match="must only call trial.suggest"):
        study.optimize(lambda t: t.suggest_int("depth", 1, 3), n_trials=1)


def test_threads_share_the_sampler_safely() -> None:
    study = optuna.create_study(direction="maximize", sampler=DeepEnsembleSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # No warning at all from a clean threaded run.
        study.optimize(additive, n_trials=24, n_jobs=3)
    assert len(study.trials) == 24
    keys = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(keys) == 24


def test_beats_random_search_on_a_nas_like_conditional_function() -> None:
    """Mean regret after 60 trials over seeds 0-2, against random search's (0-2: 5.79).

    Measured over seeds 0-19 (benchmarks/results/quality_margins.md; the space has a number,
    attn_dim, so the kernel scores, the numbers climb and the structure rule is on): deepens
    0-2.92 per seed, and the mean of any 3 of those 20 seeds at most 2.08 (bound: 0.8 x 5.79 =
    4.63); with the trust region at most 2.15 on any one seed (bound: 0.45 x 5.79 = 2.61, above
    which random search is on every seed of 0-19). Random search (machine-independent)
    averages 5.79 on seeds 0-2, so the bounds hold whichever way another CPU's floating point
    moves the trajectories, and a sampler no better than random fails them. Three seeds, not
    five, and one for the trust region: the margins hold for any of the 20, and this was the
    suite's slowest test. The comparison with TPE (20-seed means 0.62 against 2.44) is too
    close for a few seeds and lives in the benchmark.
    """
    optimum = synthetic.optimum()

    def regret(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(synthetic.objective, n_trials=60)
        return optimum - study.best_value

    seeds = range(3)
    random = np.mean([regret(optuna.samplers.RandomSampler(seed=s)) for s in seeds])
    assert random == pytest.approx(5.79, abs=0.01)  # Pure numpy: the same on every machine.
    ours = np.mean(
        [regret(DeepEnsembleSampler(seed=s, search_space=synthetic.suggest)) for s in seeds]
    )
    assert ours < 0.8 * random
    # One seed of the trust region (opt-in; its behaviour is tests/test_trust_region.py's):
    # its regret was at most 2.15 on every seed of 0-19, and the bound is 0.45 x 5.79 = 2.61.
    region = regret(
        DeepEnsembleSampler(seed=0, search_space=synthetic.suggest, trust_region=TrustRegion())
    )
    assert region < 0.45 * random

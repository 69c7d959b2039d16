"""What a candidate must not repeat: patterns of what other trials asked."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from optuna.trial import create_trial

from optuna_deepens import coordination
from optuna_deepens.coordination import PatternCache
from optuna_deepens.coordination import taken_architectures
from optuna_deepens.encoding import SearchSpaceEncoder

A = CategoricalDistribution(["a0", "a1", "a2"])
D = IntDistribution(1, 4)
ENCODER = SearchSpaceEncoder({"a": A, "b": A, "d": D})


def rows(*params: dict) -> np.ndarray:
    """Full rows: every parameter valued, as the sampler returns them."""
    return ENCODER.to_internal(params)


def finished(state: TrialState, params: dict, reported: bool = True) -> optuna.trial.FrozenTrial:
    trial = create_trial(
        state=state,
        value=1.0 if state == TrialState.COMPLETE else None,
        params=params,
        distributions={name: {"a": A, "b": A, "d": D}[name] for name in params},
        intermediate_values={0: 0.5} if reported else {},
    )
    trial._trial_id = id(trial)
    return trial


def taken(trials: list, **options) -> np.ndarray:
    return taken_architectures(ENCODER, trials, cache=PatternCache(), **options)


def test_a_row_agreeing_with_a_finished_trial_is_taken_whatever_else_it_holds() -> None:
    done = finished(TrialState.COMPLETE, {"a": "a2", "b": "a0"})  # d was not asked.
    candidates = rows(
        {"a": "a2", "b": "a0", "d": 3},  # The objective would not ask d: a repeat.
        {"a": "a2", "b": "a1", "d": 3},
        {"a": "a0", "b": "a0", "d": 3},
    )
    assert taken([done]).contains(candidates).tolist() == [True, False, False]


def test_a_partial_finished_trial_rules_out_its_whole_prefix() -> None:
    pruned_early = finished(TrialState.PRUNED, {"a": "a1"}, reported=False)
    candidates = rows({"a": "a1", "b": "a0", "d": 1}, {"a": "a0", "b": "a0", "d": 1})
    assert taken([pruned_early]).contains(candidates).tolist() == [True, False]


def test_pruned_short_runs_stay_available_for_promotion_but_full_ones_do_not() -> None:
    short = finished(TrialState.PRUNED, {"a": "a1", "b": "a1", "d": 2})
    full = finished(TrialState.PRUNED, {"a": "a0", "b": "a1", "d": 2})
    full.user_attrs["deepens_fidelity"] = "high"
    candidates = rows(short.params, full.params)
    assert taken([short, full]).contains(candidates).tolist() == [True, True]
    assert taken([short, full], reuse_pruned=True).contains(candidates).tolist() == [False, True]


def test_a_running_trial_holds_what_it_asked_and_the_certain_part_of_its_proposal() -> None:
    study = optuna.create_study()
    for params in ({"a": "a0", "b": "a0", "d": 1}, {"a": "a2", "b": "a1"}):
        study.add_trial(finished(TrialState.COMPLETE, params))  # a, b always asked; d not.
    running = study.ask()
    proposal = {"a": 1.0, "b": 2.0, "d": 3.0}  # Internal values: a1, a2, 3.
    coordination.publish_proposal(study, running._trial_id, proposal)
    trials = study._storage.get_all_trials(study._study_id)
    candidates = rows(
        {"a": "a1", "b": "a2", "d": 3},
        {"a": "a1", "b": "a2", "d": 1},  # d may not be asked: held too until it is.
        {"a": "a1", "b": "a0", "d": 3},
    )
    assert taken(trials).contains(candidates).tolist() == [True, True, False]
    # Once the running trial has asked d, only its own value is held.
    for name, distribution in (("a", A), ("b", A), ("d", D)):
        study._storage.set_trial_param(running._trial_id, name, proposal[name], distribution)
    trials = study._storage.get_all_trials(study._study_id)
    assert taken(trials).contains(candidates).tolist() == [True, False, False]

"""related_studies: finished studies of the same space as heads of the ensemble."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig
from optuna_deepens import LowFidelityPruner
from optuna_deepens import MultiFidelity
from optuna_deepens import PretrainingSet
from optuna_deepens import SearchSpaceMismatchError
from optuna_deepens import fidelity
from optuna_deepens import pretrain
from optuna_deepens.related import agreement
from optuna_deepens.related import pick_advantage
from optuna_deepens.related import startup_weight
from optuna_deepens.related import transfer_weight
from optuna_deepens.related import trusted_best

OPS = ("a", "b", "c", "d", "e")
VALUE = {"a": 0.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 0.5}
FAST = EnsembleConfig(cold_steps=150, warm_steps=30)


def suggest(trial: optuna.Trial) -> dict[str, str]:
    return {f"e{i}": trial.suggest_categorical(f"e{i}", OPS) for i in range(6)}


def score(params: dict[str, Any]) -> float:
    return sum(VALUE[params[f"e{i}"]] for i in range(6))


def finished_study(n_trials: int = 40, *, storage: str | None = None) -> optuna.Study:
    """The earlier search: random, minimising minus the score (directions may differ)."""
    study = optuna.create_study(
        storage=storage,
        study_name="earlier" if storage else None,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=7),
    )
    study.optimize(lambda t: -score(suggest(t)), n_trials=n_trials)
    return study


def sampler(related: Any, **options: Any) -> DeepEnsembleSampler:
    defaults = dict(seed=0, n_startup_trials=6, n_candidates=256, ensemble_config=FAST)
    return DeepEnsembleSampler(related_studies=related, **{**defaults, **options})


def test_the_related_best_come_first_and_their_head_learns_the_related_results() -> None:
    earlier = finished_study()
    study = optuna.create_study(direction="maximize", sampler=sampler([earlier]))
    study.optimize(lambda t: score(suggest(t)), n_trials=8)
    ranked = sorted(earlier.trials, key=lambda t: t.value)  # Minimised: best first.
    # Trial 0 is drawn before the objective has asked for anything (no search_space=); then
    # half of the 6 startup trials are the earlier study's three best architectures.
    assert [t.params for t in study.trials[1:4]] == [t.params for t in ranked[:3]]
    assert [t.user_attrs["deepens_source"] for t in study.trials[6:]] == ["model", "model"]
    fitter = study.sampler._fitter
    assert "related:earlier" not in fitter.ensemble.head_names  # Named after the study...
    head = next(h for h in fitter.ensemble.head_names if h.startswith("related:"))
    predicted = fitter.predict([t.params for t in earlier.trials], head).mean(axis=0)
    truth = -np.array([t.value for t in earlier.trials])
    # ... and trained on its results: the head ranks the earlier trials (rank correlation).
    assert (
        np.corrcoef(np.argsort(np.argsort(predicted)), np.argsort(np.argsort(truth)))[0, 1] > 0.6
    )


def test_a_related_study_is_read_from_storage_by_name(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'earlier.db'}"
    earlier = finished_study(10, storage=storage)
    study = optuna.create_study(
        direction="maximize", sampler=sampler([(storage, "earlier")], n_startup_trials=2)
    )
    study.optimize(lambda t: score(suggest(t)), n_trials=2)
    assert study.trials[1].params == min(earlier.trials, key=lambda t: t.value).params
    assert [r.head for r in study.sampler._related] == ["related:earlier"]


def test_failed_and_pruned_trials_of_a_related_study_are_not_results() -> None:
    earlier = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        if trial.number % 3 == 1:
            raise optuna.TrialPruned()
        if trial.number % 3 == 2:
            raise RuntimeError("diverged")
        return -score(params)

    earlier.optimize(objective, n_trials=15, catch=(RuntimeError,))
    made = sampler([earlier])
    (related,) = made._related
    complete = [t for t in earlier.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(related.params) == len(complete) == 5
    assert related.params[0] == min(complete, key=lambda t: t.value).params
    study = optuna.create_study(direction="maximize", sampler=made)
    study.optimize(lambda t: score(suggest(t)), n_trials=8)
    assert len(study.trials) == 8


def test_a_related_study_of_another_space_is_refused() -> None:
    other = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    other.optimize(
        lambda t: float(sum(t.suggest_int(f"e{i}", 0, 4) for i in range(6))), n_trials=5
    )
    study = optuna.create_study(direction="maximize", sampler=sampler([other]))
    # Trial 0 is drawn independently; trial 1 sees the study's space and refuses.
    with pytest.raises(SearchSpaceMismatchError, match="related study .* searched another"):
        study.optimize(lambda t: score(suggest(t)), n_trials=2)
    assert len(study.trials) == 2
    # Known at construction when the sampler is given the space.
    with pytest.raises(SearchSpaceMismatchError, match=r"\['e0', 'e1'"):
        sampler([other], search_space=suggest)


def test_a_related_study_that_never_opened_a_branch_is_of_the_same_space() -> None:
    def branched(trial: optuna.Trial) -> float:
        params = suggest(trial)
        if trial.suggest_categorical("block", ["conv", "attn"]) == "attn":
            return score(params) + trial.suggest_int("heads", 1, 8)
        return score(params)

    earlier = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        earlier.enqueue_trial({"block": "conv"})  # Never the attention branch.
    earlier.optimize(branched, n_trials=4)
    assert "heads" not in earlier.trials[0].distributions

    def space(trial: optuna.Trial) -> None:
        branched(trial)

    study = optuna.create_study(
        direction="maximize", sampler=sampler([earlier], search_space=space)
    )
    study.optimize(branched, n_trials=4)
    assert len(study.trials) == 4
    # Sharing no parameter at all is another space.
    disjoint = optuna.create_study()
    disjoint.optimize(lambda t: t.suggest_float("lr", 1e-4, 1.0), n_trials=3)
    with pytest.raises(SearchSpaceMismatchError, match="searched another space"):
        sampler([disjoint], search_space=space)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: ["not a study"], TypeError, "optuna.Study objects or"),
        (lambda: 5, TypeError, "expected a list of studies"),
        (lambda: [("sqlite:///:memory:", "absent")], ValueError, "no study named 'absent'"),
        (lambda: [finished_study(1)], ValueError, "at least 2 are needed"),
        (
            lambda: [optuna.create_study(directions=["maximize", "minimize"])],
            ValueError,
            "2 objectives",
        ),
    ],
)
def test_bad_related_studies_are_refused_at_construction(make, error, message) -> None:
    with pytest.raises(error, match=message):
        sampler(make())


def test_the_same_study_twice_is_refused() -> None:
    earlier = finished_study(5)
    with pytest.raises(ValueError, match="given twice"):
        sampler([earlier, earlier])


def test_a_resumed_study_keeps_its_related_studies(tmp_path) -> None:
    earlier = finished_study()
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    first = optuna.create_study(
        storage=storage, study_name="new", direction="maximize", sampler=sampler([earlier])
    )
    first.optimize(lambda t: score(suggest(t)), n_trials=4)
    resumed = optuna.load_study(storage=storage, study_name="new", sampler=sampler([earlier]))
    resumed.optimize(lambda t: score(suggest(t)), n_trials=6)
    trials = resumed.trials
    assert len(trials) == 10
    assert len({tuple(t.params.values()) for t in trials}) == 10  # None repeated.
    ranked = sorted(earlier.trials, key=lambda t: t.value)
    assert [t.params for t in trials[1:4]] == [t.params for t in ranked[:3]]


def test_related_studies_work_with_pretraining_and_multi_fidelity() -> None:
    earlier = finished_study()
    rng = np.random.default_rng(0)
    records = []
    for _ in range(64):
        params = {f"e{i}": OPS[rng.integers(len(OPS))] for i in range(6)}
        records.append({**params, "params": 1.0 + sum(OPS.index(v) for v in params.values())})
    surrogate = pretrain(PretrainingSet.from_records(records, search_space=suggest), n_steps=20)
    made = sampler(
        [earlier],
        n_members=None,
        pretrained=surrogate,
        multi_fidelity=MultiFidelity(low_step=2, full_step=4),
    )
    study = optuna.create_study(direction="maximize", sampler=made, pruner=LowFidelityPruner())

    def objective(trial: optuna.Trial) -> float:
        budget = fidelity(trial, default=4)
        params = suggest(trial)
        for step in range(1, 5):
            trial.report(score(params) * step / 4, step)
            if trial.should_prune() or step >= budget:
                break
        if budget < 4:
            raise optuna.TrialPruned()
        return score(params)

    study.optimize(objective, n_trials=14)
    heads = made._fitter.ensemble.head_names
    assert {"objective", "low_fidelity", "params"} <= set(heads)
    assert f"related:{earlier.study_name}" in heads
    assert "model" in {t.user_attrs.get("deepens_source") for t in study.trials}


def test_kendall_agreement_and_the_weight_it_gives() -> None:
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert agreement(x, 3 * x + 1) == pytest.approx(1.0)
    assert agreement(x, -x) == pytest.approx(-1.0)
    assert agreement(x, np.array([1.0, 0.0, 3.0, 2.0])) == pytest.approx(0.0)
    # Trusted fully while it orders new results as well as the study's own model does.
    assert transfer_weight(0.6, 0.3) == transfer_weight(0.6, -0.2) == 1.0
    assert transfer_weight(0.2, 0.8) == pytest.approx(0.25)
    assert transfer_weight(-0.4, -0.5) == transfer_weight(0.0, 0.5) == pytest.approx(0.1)
    assert transfer_weight(0.01, 0.9) == pytest.approx(0.1)


def test_the_startup_weight_follows_how_often_the_picks_beat_the_draws() -> None:
    draws = np.array([1.0, 2.0, 5.0])
    assert startup_weight(pick_advantage(np.array([6.0, 7.0]), draws)) == 1.0
    assert pick_advantage(np.array([3.0, 4.0]), draws) == pytest.approx(4 / 6)
    assert startup_weight(4 / 6) == pytest.approx(1 / 3)
    assert pick_advantage(np.array([2.0, 2.0]), np.array([2.0, 2.0])) == 0.5  # Ties: half.
    assert startup_weight(0.5) == startup_weight(0.0) == pytest.approx(0.1)  # The floor.


def test_a_related_study_is_trusted_as_far_as_it_agrees_with_the_study() -> None:
    """The same space searched for the reverse goal: its best are this study's worst. Its picks
    lose to the uniform draws at startup, so the first fit already trusts it least; once its
    head has predicted enough results before learning them, it stays below an agreeing one.

    Over sampler seeds 0-19 at 14 trials (after the startup): the reversed study's weight was
    the floor 0.1 on all 20, the agreeing study's 0.5-1.0 (0.67 at seed 0, the one here). At 18
    trials (7 results judged) the reversed study's stays 0.1 on all 20; the agreeing study's is
    1.0 on 8, 0.33-0.83 on 7 and 0.1 on 5 (seven results are few): so the
    test asserts what held on all 20."""
    agreeing = finished_study()
    reversed_goal = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=8))
    reversed_goal.optimize(lambda t: score(suggest(t)), n_trials=40)  # Minimises the score.
    study = optuna.create_study(
        direction="maximize", sampler=sampler([agreeing, reversed_goal], n_startup_trials=10)
    )
    good, bad = (f"related:{s.study_name}" for s in (agreeing, reversed_goal))
    study.optimize(lambda t: score(suggest(t)), n_trials=14)
    weights = study.sampler._fitter.related_weights  # From the startup picks alone.
    assert weights[bad] == pytest.approx(0.1) and weights[good] >= 0.5
    study.optimize(lambda t: score(suggest(t)), n_trials=4)
    weights = study.sampler._fitter.related_weights
    assert weights[bad] < 0.5 and weights[bad] <= weights[good]
    parents = trusted_best(study.sampler._related, weights, 8)
    n_good, n_bad = round(8 * weights[good]), round(8 * weights[bad])
    assert len(parents) == n_good + n_bad and 1 <= n_bad < 4  # At least one, never all 8.
    assert parents[n_good] == min(reversed_goal.trials, key=lambda t: t.value).params

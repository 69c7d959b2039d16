"""Never the same architecture twice, whatever the other trials look like; clear option errors.

The conditional space of issue 13: ``a``, ``b``, ``c`` with 4 choices each, and ``d`` (1-4) only
when ``a`` is ``a0`` or ``a1``: 160 architectures. Before the fix, one RUNNING trial that had
asked only ``a`` made 22-30 of the next 30 trials repeat a finished architecture.
"""

from __future__ import annotations

import collections
import copy
import pickle
import warnings

import optuna
from optuna.trial import TrialState
import pytest

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHOICES = ("a0", "a1", "a2", "a3")
FAST = EnsembleConfig(cold_steps=100, warm_steps=20)


def suggest(trial: optuna.Trial) -> tuple:
    a = trial.suggest_categorical("a", CHOICES)
    b = trial.suggest_categorical("b", ["b0", "b1", "b2", "b3"])
    c = trial.suggest_categorical("c", ["c0", "c1", "c2", "c3"])
    d = trial.suggest_int("d", 1, 4) if a in ("a0", "a1") else 0
    return a, b, c, d


def value(config: tuple) -> float:
    a, b, c, d = config
    return CHOICES.index(a) + 0.7 * int(b[1]) + 0.3 * int(c[1]) + 0.2 * d


def key(trial: optuna.trial.FrozenTrial | optuna.Trial) -> tuple:
    return tuple(sorted(trial.params.items()))


def sampler(seed: int, with_space: bool = False, **options) -> DeepEnsembleSampler:
    return DeepEnsembleSampler(
        seed=seed,
        n_startup_trials=5,
        n_candidates=512,
        ensemble_config=FAST,
        search_space=suggest if with_space else None,
        **options,
    )


@pytest.mark.parametrize(
    "seed, other",
    [(0, "running"), (1, "running"), (2, "running"), (0, "fail"), (0, "pruned")],
)
def test_a_partial_trial_never_makes_a_finished_architecture_return(seed: int, other: str) -> None:
    """40 trials, then one that asked only ``a`` (another worker between two suggest calls,
    or a trial stopped right there), then 30 more: none may repeat an architecture."""
    study = optuna.create_study(direction="maximize", sampler=sampler(seed))
    study.optimize(lambda t: value(suggest(t)), n_trials=40)
    partial = study.ask()
    partial.suggest_categorical("a", CHOICES)
    if other != "running":
        study.tell(partial, state=TrialState[other.upper()])
    seen = {key(t) for t in study.trials if t.state == TrialState.COMPLETE}
    for _ in range(30):
        trial = study.ask()
        config = suggest(trial)
        assert key(trial) not in seen, f"trial {trial.number} repeats {key(trial)}"
        seen.add(key(trial))
        study.tell(trial, value(config))
    # The model did choose these trials, and the partial trial did not stop the search.
    assert {t.user_attrs["deepens_source"] for t in study.trials[41:]} == {"model"}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_space", [False, True])
def test_pruning_right_after_the_first_suggest_is_never_repeated(
    seed: int, with_space: bool
) -> None:
    """A common way to skip invalid architectures: raise TrialPruned as soon as they show."""

    def objective(trial: optuna.Trial) -> float:
        a = trial.suggest_categorical("a", CHOICES)
        if a == "a3":
            raise optuna.TrialPruned()
        b = trial.suggest_categorical("b", ["b0", "b1", "b2", "b3"])
        if (a, b) == ("a1", "b2"):
            raise optuna.TrialPruned()
        return value(suggest(trial))

    study = optuna.create_study(direction="maximize", sampler=sampler(seed, with_space))
    study.optimize(objective, n_trials=60)
    counts = collections.Counter(key(t) for t in study.trials)
    assert max(counts.values()) == 1, counts.most_common(3)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= 50


def test_every_architecture_once_until_the_space_is_exhausted() -> None:
    """160 trials over 160 conditional architectures: each exactly once, concurrent threads."""
    study = optuna.create_study(direction="maximize", sampler=sampler(0))
    study.optimize(lambda t: value(suggest(t)), n_trials=160, n_jobs=2)
    assert len({key(t) for t in study.trials}) == 160


@pytest.mark.parametrize(
    "space, names",
    [
        ("extra in search_space", "asked by search_space only: ['e']"),
        ("extra in objective", "asked by the objective only: ['e']"),
    ],
)
def test_a_search_space_that_differs_from_the_objective_warns_once(space: str, names: str) -> None:
    def with_e(trial: optuna.Trial) -> tuple:
        config = suggest(trial)
        trial.suggest_categorical("e", ["e0", "e1"])
        return config

    declared, objective = (
        (with_e, suggest) if space == "extra in search_space" else (suggest, with_e)
    )
    sampler_ = DeepEnsembleSampler(
        seed=0, n_startup_trials=5, search_space=declared, ensemble_config=FAST
    )
    study = optuna.create_study(direction="maximize", sampler=sampler_)
    with pytest.warns(UserWarning, match="search_space does not make") as record:
        study.optimize(lambda t: value(objective(t)), n_trials=40)
    mismatch = [w for w in record if "search_space does not make" in str(w.message)]
    assert len(mismatch) == 1
    assert names in str(mismatch[0].message)
    assert "search_space=None" in str(mismatch[0].message)  # The fix is named.
    # Nothing was trained twice even so.
    assert len({key(t) for t in study.trials}) == 40


def test_a_matching_search_space_never_warns() -> None:
    study = optuna.create_study(direction="maximize", sampler=sampler(0, with_space=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        study.optimize(lambda t: value(suggest(t)), n_trials=15)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_members": 2.5}, TypeError, r"n_members=2.5\): expected an int"),
        ({"n_members": "6"}, TypeError, r"n_members='6'\): expected an int"),
        ({"n_members": 1}, ValueError, "n_members must be at least 2"),
        ({"n_candidates": 10.7}, TypeError, r"n_candidates=10.7\): expected an int"),
        ({"n_candidates": 0}, ValueError, "n_candidates must be at least 1"),
        ({"n_startup_trials": -1}, ValueError, "n_startup_trials must be at least 0"),
        ({"n_startup_trials": 2.0}, TypeError, "n_startup_trials"),
        ({"seed": "x"}, TypeError, r"seed='x'\): expected an int"),
        ({"seed": -3}, ValueError, "seed must be at least 0"),
        ({"acquisition": "kg"}, ValueError, "choose one of"),
        ({"objective_scale": "raw"}, ValueError, r"objective_scale='raw'\): choose one of"),
        ({"search_space": "suggest"}, TypeError, "search_space="),
        ({"ensemble_config": {"n_members": 4}}, TypeError, "ensemble_config"),
        ({"trust_region": 3}, TypeError, "trust_region"),
        ({"replay_pretraining": "yes"}, TypeError, "replay_pretraining"),
        (
            {"n_members": 4, "ensemble_config": EnsembleConfig(n_members=10)},
            ValueError,
            "two member counts",
        ),
    ],
)
def test_bad_options_are_refused_at_construction(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        DeepEnsembleSampler(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"learning_rate": -1}, ValueError, "learning_rate must be positive"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate must be finite"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"n_members": 2.5}, TypeError, "EnsembleConfig\\(n_members=2.5\\)"),
        ({"trunk_sizes": ()}, ValueError, "at least one layer"),
        ({"trunk_sizes": 64}, TypeError, "trunk_sizes"),
        ({"cold_steps": 0}, ValueError, "cold_steps must be at least 1"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must not be negative"),
        ({"n_threads": 0}, ValueError, "n_threads must be at least 1"),
    ],
)
def test_ensemble_config_validates_itself(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EnsembleConfig(**kwargs)


def test_ensemble_config_members_are_not_overwritten_by_the_default() -> None:
    sampler_ = DeepEnsembleSampler(ensemble_config=EnsembleConfig(n_members=3, cold_steps=50))
    study = optuna.create_study(direction="maximize", sampler=sampler_)
    study.optimize(lambda t: value(suggest(t)), n_trials=12)
    assert sampler_.predict_objective([study.best_params]).shape == (3, 1)


@pytest.mark.parametrize("n_startup_trials", [0, 1])
def test_zero_or_one_startup_trials_start_the_model_at_two_results(n_startup_trials: int) -> None:
    sampler_ = DeepEnsembleSampler(seed=0, n_startup_trials=n_startup_trials, ensemble_config=FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler_)
    study.optimize(lambda t: value(suggest(t)), n_trials=5)
    sources = [t.user_attrs.get("deepens_source") for t in study.trials]
    # The first trial has no search space to model yet: Optuna samples it independently.
    assert sources == [None, "startup", "model", "model", "model"]


def test_sampler_pickles_and_deep_copies_mid_study() -> None:
    """Optuna's recipe to resume with the same sampler: ``pickle.dump(study.sampler, f)``."""
    sampler_ = sampler(0)
    study = optuna.create_study(direction="maximize", sampler=sampler_)
    study.optimize(lambda t: value(suggest(t)), n_trials=12)
    for restored in (pickle.loads(pickle.dumps(sampler_)), copy.deepcopy(sampler_)):
        assert restored.predict_objective([study.best_params]).shape == (6, 1)
        resumed = optuna.load_study(
            study_name=study.study_name, storage=study._storage, sampler=restored
        )
        resumed.optimize(lambda t: value(suggest(t)), n_trials=3, n_jobs=2)  # The lock works.
    assert len({key(t) for t in study.trials}) == len(study.trials) == 18


def test_the_objective_sees_the_samplers_attrs() -> None:
    seen: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial)
        seen.append(trial.user_attrs)
        return value(config)

    study = optuna.create_study(direction="maximize", sampler=sampler(0))
    study.optimize(objective, n_trials=8)
    assert seen[1]["deepens_source"] == "startup"
    assert seen[-1]["deepens_source"] == "model"
    assert seen[-1]["deepens_acquisition_function"] == "ei"  # The kernel: log EI.
    assert seen[-1] == study.trials[-1].user_attrs


def test_partly_enqueued_trials_get_an_untried_rest() -> None:
    """enqueue_trial({"a": "a2"}): the sampler fills b and c, never with a finished pair, down
    to the last of the 16 pairs (how many are left depends on where the model went first)."""
    study = optuna.create_study(direction="maximize", sampler=sampler(0))
    study.optimize(lambda t: value(suggest(t)), n_trials=20)
    left = 16 - sum(t.params["a"] == "a2" for t in study.trials)
    assert left >= 8
    for _ in range(left):
        study.enqueue_trial({"a": "a2"})
    study.optimize(lambda t: value(suggest(t)), n_trials=left)
    keys = [key(t) for t in study.trials]
    assert len(set(keys)) == len(keys) == 20 + left
    assert all(t.params["a"] == "a2" for t in study.trials[20:])

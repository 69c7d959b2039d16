"""Multi-fidelity search: the schedule, the objective's budget, pruned trials as data, resume.

The studies here use a cheap two-fidelity objective: six categorical edges whose final value is
known, and a learning curve reported at every step up to the budget the sampler gives the trial
(``LOW_STEP`` of ``FULL_STEP`` steps for a short run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
import warnings

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest
import synthetic

import optuna_deepens
from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig
from optuna_deepens import LowFidelityPruner
from optuna_deepens import MultiFidelity
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.multi_fidelity import promotion_order
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.training_data import build_training_data
from optuna_deepens.training_data import value_from_step

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOW_STEP, FULL_STEP = 3, 12
OPS = ("a", "b", "c", "d", "e")
OP_VALUES = {"a": 0.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 0.5}
SPACE = {f"e{i}": CategoricalDistribution(OPS) for i in range(6)}
FAST = EnsembleConfig(cold_steps=100, warm_steps=20)
# p=2 low trials per iteration, f=2 iterations, then q=1 full trial: rounds of 5 trials whose
# last one trains fully; 4 * 3/12 = 1 low evaluation per full one, a cost share of 0.5.
CYCLE = ["low", "low", "low", "low", "high"]


def schedule(name: str, **kwargs: Any) -> MultiFidelity:
    options = {"low_per_iteration": 2, "high_per_round": 1, "iterations_per_round": 2}
    return MultiFidelity(
        low_step=LOW_STEP, full_step=FULL_STEP, schedule=name, **{**options, **kwargs}
    )


def make_sampler(
    config: MultiFidelity | None, seed: int = 0, surrogate: str = "ensemble"
) -> DeepEnsembleSampler:
    """The ensemble unless told: it is what learns short runs beside zero-cost metrics and
    related studies; ``"auto"`` gives the kernel with short runs."""
    return DeepEnsembleSampler(
        seed=seed,
        n_startup_trials=4,
        n_members=3,
        n_candidates=256,
        ensemble_config=FAST,
        multi_fidelity=config,
        numeric_surrogate=surrogate,
    )


def final_value(params: dict[str, Any]) -> float:
    return sum(OP_VALUES[params[f"e{i}"]] for i in range(6))


def curve(params: dict[str, Any], step: int) -> float:
    """Value reported at ``step``: rises to the final value, with an early bias by edge 5."""
    progress = step / FULL_STEP
    return progress * final_value(params) + (1 - progress) * OP_VALUES[params["e5"]]


class Objective:
    """Trains each trial for the budget the sampler chose; remembers what the trial was told.

    ``stop_itself`` ends a short run with ``TrialPruned`` at its budget (as the NAS-Bench-201
    harness does) instead of relying on ``LowFidelityPruner``.
    """

    def __init__(self, stop_itself: bool = False, report_every: int = 1) -> None:
        self.told: dict[int, tuple[int | None, str | None, bool]] = {}
        self.stop_itself = stop_itself
        self.report_every = report_every

    def __call__(self, trial: optuna.Trial) -> float:
        # Before any suggest call: the budget must already be known.
        budget = optuna_deepens.fidelity(trial, default=FULL_STEP)
        self.told[trial.number] = (
            budget,
            trial.user_attrs.get("deepens_fidelity"),
            trial.params == {},
        )
        params = {f"e{i}": trial.suggest_categorical(f"e{i}", OPS) for i in range(6)}
        assert budget is not None
        for step in range(self.report_every, FULL_STEP + 1, self.report_every):
            trial.report(curve(params, step), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
            if step >= budget:
                break
        if self.stop_itself and budget < FULL_STEP:
            raise optuna.TrialPruned()
        return final_value(params)


def run(
    config: MultiFidelity | None,
    n_trials: int,
    *,
    pruner: BasePruner | None = None,
    objective: Objective | None = None,
    seed: int = 0,
    surrogate: str = "ensemble",
) -> tuple[optuna.Study, Objective]:
    objective = objective or Objective()
    study = optuna.create_study(
        direction="maximize",
        sampler=make_sampler(config, seed, surrogate),
        pruner=pruner or LowFidelityPruner(),
    )
    study.optimize(objective, n_trials=n_trials)
    return study, objective


def attrs(trials: list[FrozenTrial], name: str) -> list[Any]:
    return [t.user_attrs.get(f"deepens_{name}") for t in trials]


def key(trial: FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


def cost_share_of_full_trainings(trials: list[FrozenTrial]) -> float:
    costs = np.array(attrs(trials, "cost"), dtype=float)
    high = np.array([f == "high" for f in attrs(trials, "fidelity")])
    return float(costs[high].sum() / costs.sum())


def check_costs(trials: list[FrozenTrial]) -> None:
    """Short runs stop at the low step and cost low/full; full ones complete and cost 1."""
    for t in trials:
        fidelity = t.user_attrs["deepens_fidelity"]
        assert t.user_attrs["deepens_budget"] == (LOW_STEP if fidelity == "low" else FULL_STEP)
        if fidelity == "low":
            assert t.state == TrialState.PRUNED and t.last_step == LOW_STEP, t.number
            assert t.user_attrs["deepens_cost"] == pytest.approx(LOW_STEP / FULL_STEP)
        else:
            assert t.state == TrialState.COMPLETE and t.last_step == FULL_STEP, t.number
            assert t.user_attrs["deepens_cost"] == pytest.approx(1.0)


def check_promotions(trials: list[FrozenTrial]) -> None:
    """A promoted full training repeats a pruned short run of an earlier trial, once."""
    promoted = [t for t in trials if t.user_attrs.get("deepens_source") == "promotion"]
    assert promoted
    for t in promoted:
        assert t.user_attrs["deepens_fidelity"] == "high"
        earlier = [
            e
            for e in trials[: t.number]
            if key(e) == key(t)
            and e.state == TrialState.PRUNED
            and e.user_attrs["deepens_fidelity"] == "low"
            and LOW_STEP in e.intermediate_values
        ]
        assert earlier, f"trial {t.number} promoted no earlier short run"
    assert len({key(t) for t in promoted}) == len(promoted)


def check_share(trials: list[FrozenTrial], config: MultiFidelity) -> None:
    """The promotion schedule never spends more than its share on full trainings, nor much less."""
    target = config.high_cost_share
    n_high = 0
    for n, t in enumerate(trials):
        if t.user_attrs["deepens_fidelity"] == "high":
            n_high += 1
            assert cost_share_of_full_trainings(trials[: n + 1]) <= target + 1e-9, t.number
    assert n_high >= 3
    assert target - 0.15 <= cost_share_of_full_trainings(trials) <= target + 1e-9


def check_no_repeat_at_a_fidelity(trials: list[FrozenTrial]) -> None:
    for level in ("low", "high"):
        keys = [key(t) for t in trials if is_level(t, level)]
        assert len(set(keys)) == len(keys), f"an architecture was trained twice at {level}"


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"low_step": 12, "full_step": 12}, "0 < low_step < full_step"),
        ({"low_step": 20, "full_step": 12}, "0 < low_step < full_step"),
        ({"low_step": 0, "full_step": 12}, "0 < low_step < full_step"),
        ({"low_step": 3, "full_step": 12, "schedule": "hyperband"}, "choose one of"),
        ({"low_step": 3, "full_step": 12, "high_per_round": 0}, "at least 1"),
        ({"low_step": 3, "full_step": 12, "high_fidelity_weight": 0.0}, "positive"),
        ({"low_step": 3, "full_step": 12, "low_fidelity_acquisition": "mean"}, "choose one of"),
        *[
            ({"low_step": 3, "full_step": 12, "full_cost_share": bad}, r"share in \(0, 1\)")
            for bad in (1.0, 0.0, -0.1, float("nan"), "0.5")
        ],
        (
            {"low_step": 3, "full_step": 12, "schedule": "fixed", "full_cost_share": 0.5},
            "promotion schedule's",
        ),
    ],
)
def test_invalid_multi_fidelity_options_are_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiFidelity(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        # A fractional step would never be reached by an integer epoch: no promotions.
        ({"low_step": 12.7, "full_step": 200}, r"low_step=12.7\): expected an int"),
        ({"low_step": "12", "full_step": 200}, "low_step='12'"),
        ({"low_step": 12, "full_step": 200, "low_per_iteration": 2.5}, "low_per_iteration"),
        ({"low_step": 12, "full_step": 200, "high_fidelity_weight": "2"}, "expected a number"),
    ],
)
def test_wrongly_typed_multi_fidelity_options_name_the_option(kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        MultiFidelity(**kwargs)


def test_a_nan_full_result_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="high_fidelity_weight must be finite"):
        MultiFidelity(low_step=12, full_step=200, high_fidelity_weight=float("nan"))


def test_the_pruner_refuses_a_base_that_is_not_a_pruner() -> None:
    with pytest.raises(TypeError, match=r"LowFidelityPruner\(base=3\): expected BasePruner"):
        LowFidelityPruner(base=3)


def test_thesis_schedule_spends_half_its_cost_on_full_trainings() -> None:
    thesis = MultiFidelity(low_step=12, full_step=200, schedule="fixed")
    assert thesis.low_cost == pytest.approx(0.06)
    assert thesis.round_length == 53  # p * f = 50 short runs, then q = 3 full ones.
    assert thesis.high_cost_share == pytest.approx(0.5)
    assert thesis.budget("low") == 12 and thesis.budget("high") == 200
    assert thesis.condition(12) == 0.0
    assert thesis.condition(6) < 0.0 < thesis.condition(24)


# -------------------------------------------------------------------------------- schedules
def test_fixed_schedule_follows_its_cycle_and_counts_costs() -> None:
    config = schedule("fixed")
    study, objective = run(config, 15)
    trials = study.trials
    assert attrs(trials, "fidelity") == CYCLE * 3
    check_costs(trials)
    # The objective was told the same budget, by trial number, before suggesting anything.
    assert [objective.told[t.number] for t in trials] == [
        (config.budget(level), level, True) for level in CYCLE * 3
    ]
    # Full trainings after the startup are chosen by the model.
    assert attrs(trials, "source")[4::5] == ["model"] * 3
    assert cost_share_of_full_trainings(trials) == pytest.approx(config.high_cost_share)


@pytest.mark.parametrize(
    ("share", "surrogate"), [(None, "ensemble"), (0.6, "ensemble"), (None, "auto")]
)
def test_promotion_schedule_keeps_its_cost_share_and_promotes_pruned_short_runs(
    share: float | None, surrogate: str
) -> None:
    """With either model: ``"auto"`` scores short runs and promotions with the kernel here."""
    config = schedule("promotion", full_cost_share=share)
    assert config.high_cost_share == pytest.approx(share or 0.5)
    study, objective = run(config, 24, surrogate=surrogate)
    trials = study.trials
    guided_short = [t for t in trials if is_level(t, "low") and attrs([t], "source") == ["model"]]
    # The kernel's log EI, or the ensemble's short-run UCB.
    expected = "ei" if surrogate == "auto" else "ucb"
    assert set(attrs(guided_short, "acquisition_function")) == {expected}
    levels = attrs(trials, "fidelity")
    assert levels[:4] == ["low"] * 4  # The startup: short runs only.
    check_costs(trials)
    check_share(trials, config)
    if share is not None:  # Spent, not ignored: more than the p/q/f rhythm's 0.5.
        assert cost_share_of_full_trainings(trials) > 0.5
    check_promotions(trials)
    check_full_trainings_are_promotions(study, config)
    check_no_repeat_at_a_fidelity(trials)
    assert all(
        objective.told[t.number]
        == (t.user_attrs["deepens_budget"], t.user_attrs["deepens_fidelity"], True)
        for t in trials
    )


def check_full_trainings_are_promotions(study: optuna.Study, config: MultiFidelity) -> None:
    """Every full training after the startup is a promotion, unless the best short runs (the
    top quarter, at least 4) had all been promoted already: then the model proposes one.

    Which short runs lead depends on the model's float path, so whether the pool ran dry
    differs between machines; the rule does not.
    """
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    trials = study.trials
    sources = attrs(trials, "source")
    assert set(sources[4:]) <= {"promotion", "model"}
    for trial in trials:
        if not is_level(trial, "high") or trial.user_attrs["deepens_source"] == "promotion":
            continue
        earlier = trials[: trial.number]
        short = [t for t in earlier if is_level(t, "low") and t.state == TrialState.PRUNED]
        short.sort(key=lambda t: -sign * value_from_step(t, config.low_step))
        best = short[: max(4, math.ceil(len(short) / 4))]
        promoted = {key(t) for t in earlier if is_level(t, "high")}
        assert best and all(key(t) in promoted for t in best), trial.number


# --------------------------------------------------------------------- the objective's budget
@pytest.mark.parametrize("stop_itself", [False, True])
def test_objective_is_told_its_budget_before_any_suggest_call(stop_itself: bool) -> None:
    config = schedule("fixed")
    objective = Objective(stop_itself=stop_itself)
    pruner = optuna.pruners.NopPruner() if stop_itself else LowFidelityPruner()
    study, _ = run(config, 10, pruner=pruner, objective=objective)
    for t in study.trials:
        budget, level, before_suggest = objective.told[t.number]
        assert before_suggest
        assert level == CYCLE[t.number % 5] == t.user_attrs["deepens_fidelity"]
        assert budget == (LOW_STEP if level == "low" else FULL_STEP)
        assert optuna_deepens.fidelity(t) == budget  # Frozen trials answer too.
    check_costs(study.trials)


def test_ask_and_tell_trials_know_their_budget() -> None:
    study = optuna.create_study(sampler=make_sampler(schedule("fixed")))
    budgets = []
    for _ in range(5):
        trial = study.ask()
        budgets.append(optuna_deepens.fidelity(trial))
        study.tell(trial, state=TrialState.PRUNED)
    assert budgets == [LOW_STEP] * 4 + [FULL_STEP]


@pytest.mark.parametrize(
    "sampler",
    [optuna.samplers.RandomSampler(seed=0), make_sampler(None)],
    ids=["random", "mono-fidelity"],
)
def test_other_samplers_leave_the_objective_its_default(
    sampler: optuna.samplers.BaseSampler,
) -> None:
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append((optuna_deepens.fidelity(trial, default=7), optuna_deepens.fidelity(trial)))
        return final_value({f"e{i}": trial.suggest_categorical(f"e{i}", OPS) for i in range(6)})

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=3)
    assert seen == [(7, None)] * 3
    assert all("deepens_fidelity" not in t.user_attrs for t in study.trials)
    assert all("deepens_cost" not in t.user_attrs for t in study.trials)


# --------------------------------------------------------------------------------- the pruner
class CountingPruner(BasePruner):
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.calls += 1
        return self.answer


def _asked(study: optuna.Study, fidelity: str | None) -> optuna.Trial:
    trial = study.ask()
    if fidelity is not None:
        trial.set_user_attr("deepens_fidelity", fidelity)
        trial.set_user_attr("deepens_budget", LOW_STEP if fidelity == "low" else FULL_STEP)
    return trial


def test_low_fidelity_pruner_stops_short_runs_at_their_budget_not_before() -> None:
    base = CountingPruner(answer=False)
    study = optuna.create_study(pruner=LowFidelityPruner(base=base))
    trial = _asked(study, "low")
    answers = []
    for step in range(1, LOW_STEP + 1):
        trial.report(float(step), step)
        answers.append(trial.should_prune())
    assert answers == [False] * (LOW_STEP - 1) + [True]
    assert base.calls == 0  # Short runs are the companion pruner's alone.

    skipping = _asked(study, "low")  # Reports every 5 steps: stops at the first past the budget.
    skipping.report(1.0, 5)
    assert skipping.should_prune()


@pytest.mark.parametrize("answer", [False, True])
def test_low_fidelity_pruner_defers_full_trainings_to_its_base(answer: bool) -> None:
    base = CountingPruner(answer=answer)
    study = optuna.create_study(pruner=LowFidelityPruner(base=base))
    for fidelity in ("high", None):  # Decided full, or decided by no multi-fidelity sampler.
        trial = _asked(study, fidelity)
        trial.report(1.0, LOW_STEP)
        assert trial.should_prune() is answer
    assert base.calls == 2


def test_low_fidelity_pruner_without_base_never_stops_full_trainings() -> None:
    study = optuna.create_study(pruner=LowFidelityPruner())
    trial = _asked(study, "high")
    for step in range(1, FULL_STEP + 1):
        trial.report(0.0, step)
        assert not trial.should_prune()


# ------------------------------------------------------------------ pruned trials as data
def _rows_of(data: TrainingData, encoder: SearchSpaceEncoder, trial: FrozenTrial) -> np.ndarray:
    """Rows of ``data`` whose architecture is ``trial``'s."""
    row = encoder.to_internal([trial.params])[0]
    return np.flatnonzero(np.all(np.isclose(data.internal, row), axis=1))


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_pruned_trials_are_low_fidelity_rows_at_their_step(direction: str) -> None:
    config = MultiFidelity(low_step=LOW_STEP, full_step=FULL_STEP)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=0))
    # (last step reported, final state): pruned before, at and after the low step, a failed
    # trial, complete ones with and without a value at the low step.
    plan = [
        (2, TrialState.PRUNED),
        (LOW_STEP, TrialState.PRUNED),
        (7, TrialState.PRUNED),
        (5, TrialState.FAIL),
        (FULL_STEP, TrialState.COMPLETE),
        (FULL_STEP, TrialState.COMPLETE),
        (FULL_STEP, TrialState.COMPLETE),
    ]
    for n, (last, state) in enumerate(plan):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        steps = range(1, last + 1) if n != 6 else [FULL_STEP]  # The last skips the low step.
        for step in steps:
            trial.report(10 * x + step, step)
        study.tell(trial, 10 * x + 100 if state == TrialState.COMPLETE else None, state=state)
    trials = study.trials
    encoder = SearchSpaceEncoder({"x": FloatDistribution(0.0, 1.0)})
    data = build_training_data(trials, encoder, study.direction, low_step=config.low_step)
    low, objective = data.targets[LOW_FIDELITY], data.targets[OBJECTIVE]
    condition = data.conditions[LOW_FIDELITY]
    transform = data.transforms[LOW_FIDELITY]
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    for t, (last, state) in zip(trials, plan):
        rows = _rows_of(data, encoder, t)
        by_condition = {float(condition[r]): r for r in rows if np.isfinite(low[r])}
        expected_steps = set()
        if LOW_STEP in t.intermediate_values:
            expected_steps.add(LOW_STEP)
        if state != TrialState.COMPLETE:
            expected_steps.add(last)
            # Optuna stores a pruned trial's last value as its value: still never a final one.
            assert np.isnan(objective[rows]).all(), t.number
        else:
            assert np.isfinite(objective[rows]).sum() == 1, t.number
        assert set(by_condition) == {config.condition(s) for s in expected_steps}, t.number
        for step in expected_steps:
            r = by_condition[config.condition(step)]
            raw = t.intermediate_values[step]
            assert transform.inverse(low[[r]])[0] == pytest.approx(sign * raw), (t.number, step)
    # The trial that never reported the low step has no low-fidelity value at all.
    assert not np.isfinite(low[_rows_of(data, encoder, trials[6])]).any()
    assert data.best(LOW_FIDELITY) == pytest.approx(
        max(
            transform(np.array([sign * t.intermediate_values[LOW_STEP]]))[0]
            for t in trials
            if LOW_STEP in t.intermediate_values
        )
    )


# (make_pruner, stop_itself) by test id. pruned_search is also run for seeds 0-19 by
# benchmarks/quality_margins_models.py.
OPTUNA_PRUNERS = {
    "median-under-companion": (
        lambda: LowFidelityPruner(optuna.pruners.MedianPruner(1, n_warmup_steps=LOW_STEP + 1)),
        False,
    ),
    "successive-halving-under-companion": (
        lambda: LowFidelityPruner(
            optuna.pruners.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2)
        ),
        False,
    ),
    "median-alone": (lambda: optuna.pruners.MedianPruner(1, n_warmup_steps=LOW_STEP + 1), True),
}


def pruned_search(pruner_id: str, seed: int = 0) -> tuple[optuna.Study, MultiFidelity]:
    # One short run then two full trainings per round: Optuna's pruner stops some full ones.
    make_pruner, stop_itself = OPTUNA_PRUNERS[pruner_id]
    config = schedule("fixed", low_per_iteration=1, iterations_per_round=1, high_per_round=2)
    objective = Objective(stop_itself=stop_itself)
    study, _ = run(config, 18, pruner=make_pruner(), objective=objective, seed=seed)
    return study, config


@pytest.mark.parametrize("pruner_id", list(OPTUNA_PRUNERS))
def test_optuna_pruners_feed_low_fidelity_data_at_the_step_they_stopped(pruner_id: str) -> None:
    study, config = pruned_search(pruner_id)
    trials = study.trials
    stopped = [
        t
        for t in trials
        if t.user_attrs["deepens_fidelity"] == "high" and t.state == TrialState.PRUNED
    ]
    # Sampler seeds 0-19: the pruner stopped 2-9 (median) or 2-10 (halving) of 12 full runs.
    assert stopped, "the pruner stopped no full training"
    assert any(s == "model" for s in attrs(trials, "source"))
    encoder = SearchSpaceEncoder(SPACE)
    data = build_training_data(trials, encoder, study.direction, low_step=config.low_step)
    low, condition = data.targets[LOW_FIDELITY], data.conditions[LOW_FIDELITY]
    for t in stopped:
        assert LOW_STEP < t.last_step < FULL_STEP
        assert t.user_attrs["deepens_cost"] == pytest.approx(t.last_step / FULL_STEP)
        # Its value where it stopped is a low-fidelity row at that step, with no full result.
        # (Rows are found by architecture: a stopped one may be trained again, see below.)
        rows = [
            r
            for r in _rows_of(data, encoder, t)
            if condition[r] == config.condition(t.last_step)
            and np.isnan(data.targets[OBJECTIVE][r])
        ]
        assert rows, t.number
        assert np.isfinite(low[rows]).all()
    # Optuna records a pruned trial's last intermediate value as its value: never a result.
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert np.isfinite(data.targets[OBJECTIVE]).sum() == n_complete
    for t in trials:
        if t.user_attrs["deepens_fidelity"] == "low":
            assert t.state == TrialState.PRUNED and t.last_step == LOW_STEP
            assert t.user_attrs["deepens_cost"] == pytest.approx(LOW_STEP / FULL_STEP)
    # Every finished trial reported the low step; stopped full trainings add a second row.
    assert np.isfinite(low).sum() == len(trials) + len(stopped)


# ------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize(
    ("name", "surrogate"),
    [("fixed", "ensemble"), ("promotion", "ensemble"), ("promotion", "auto")],
)
def test_a_new_sampler_resumes_in_the_middle_of_the_schedule(
    name: str, surrogate: str, tmp_path: Path
) -> None:
    config = schedule(name)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = optuna.create_study(
        study_name="mf",
        storage=storage,
        direction="maximize",
        sampler=make_sampler(config, surrogate=surrogate),
        pruner=LowFidelityPruner(),
    )
    first.optimize(Objective(), n_trials=7)  # Stops in the middle of the second round.
    resumed = optuna.load_study(
        study_name="mf",
        storage=storage,
        sampler=make_sampler(config, surrogate=surrogate),
        pruner=LowFidelityPruner(),
    )
    resumed.optimize(Objective(), n_trials=8)
    trials = resumed.trials
    assert len(trials) == 15
    check_costs(trials)
    check_no_repeat_at_a_fidelity(trials)
    sources = attrs(trials[7:], "source")
    assert set(sources) <= {"model", "promotion"} and "model" in sources
    if name == "fixed":
        assert attrs(trials, "fidelity") == CYCLE * 3
    else:
        check_share(trials, config)
        check_promotions(trials)


# ---------------------------------------------------------------- the low-fidelity head helps
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def _held_out_rank_correlation(seed: int, n_low: int) -> float:
    """Spearman of the full-result head on 500 unseen cells, after 15 full results.

    The low fidelity is a noisy affine function of the full one, as early accuracies are.
    """
    rng = np.random.default_rng(seed)
    cells = rng.permutation(len(OPS) ** 6)[: 15 + n_low + 500]
    ops = [tuple(int(c) for c in np.base_repr(int(cell), 5).zfill(6)) for cell in cells]
    params = [{f"e{i}": synthetic.OPS[o] for i, o in enumerate(cell)} for cell in ops]
    space = {name: CategoricalDistribution(synthetic.OPS) for name in params[0]}
    full = np.array([synthetic.cell_score(cell) for cell in ops])
    short = 0.5 * full - 1.0 + 0.3 * rng.normal(size=len(full))
    sampler = DeepEnsembleSampler(
        seed=seed,
        n_startup_trials=2,
        n_candidates=256,
        multi_fidelity=MultiFidelity(low_step=LOW_STEP, full_step=FULL_STEP),
        numeric_surrogate="ensemble",  # The margins below were measured on its heads.
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(15 + n_low):
        complete = i < 15
        study.add_trial(
            optuna.trial.create_trial(
                params=params[i],
                distributions=space,
                state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                value=float(full[i]) if complete else None,
                intermediate_values={LOW_STEP: float(short[i])},
            )
        )
    study.ask().suggest_categorical("e0", synthetic.OPS)  # The sampler fits its ensemble.
    held_out = slice(15 + n_low, None)
    predicted = sampler.predict_objective(params[held_out]).mean(axis=0)
    return _spearman(predicted, full[held_out])


def test_low_fidelity_results_improve_the_prediction_of_full_results() -> None:
    """Measured over seeds 0-19 (benchmarks/results/quality_margins_models.md): 0.21-0.72 with
    15 full results alone, 0.58-0.92 with 300 short runs besides; the gain was positive for
    every seed (+0.18 to +0.41, median +0.30), and its mean over any 3 of the 20 seeds was
    +0.22 to +0.39 (seeds 0-2: +0.28). A model that ignored the short runs would gain ~0."""
    without, with_low = zip(
        *[(_held_out_rank_correlation(s, 0), _held_out_rank_correlation(s, 300)) for s in range(3)]
    )
    assert np.mean(with_low) >= np.mean(without) + 0.15
    assert all(w > wo for w, wo in zip(with_low, without))


# ------------------------------------------------------------------------- known defects
@pytest.mark.parametrize("case", ["reports-every-2-steps", "mono-fidelity-history"])
def test_low_fidelity_trials_without_a_value_at_the_low_step_do_not_crash(case: str) -> None:
    config = schedule("promotion")
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(config), pruner=LowFidelityPruner()
    )
    if case == "mono-fidelity-history":  # Full results from before multi-fidelity was on.
        rng = np.random.default_rng(0)
        for _ in range(5):
            params = {name: OPS[rng.integers(len(OPS))] for name in SPACE}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=SPACE, value=final_value(params)
                )
            )
        objective = Objective()
    else:  # Evaluates every 2 steps: the short runs stop at step 4, past low_step=3.
        objective = Objective(report_every=2)
    study.optimize(objective, n_trials=8)
    assert all(t.state != TrialState.FAIL for t in study.trials)


def test_full_trainings_are_chosen_by_the_model_once_the_best_short_runs_are_promoted() -> None:
    # Full trainings take 12 / 13 of the cost: after the four startup short runs, every trial
    # trains fully, and the four promotable short runs are used up by trial 7.
    config = schedule("promotion", low_per_iteration=1, iterations_per_round=1, high_per_round=3)
    study, _ = run(config, 12)
    trials = study.trials
    assert attrs(trials, "fidelity") == ["low"] * 4 + ["high"] * 8
    check_no_repeat_at_a_fidelity(trials)
    assert set(attrs(trials[4:], "source")) <= {"promotion", "model"}


@pytest.mark.parametrize("low_acquisition", ["ucb", "pi"])
def test_short_runs_and_full_trainings_each_use_their_own_acquisition(
    low_acquisition: str,
) -> None:
    config = schedule("fixed", low_fidelity_acquisition=low_acquisition)
    study, _ = run(config, 25)
    trials = [t for t in study.trials if t.user_attrs.get("deepens_source") == "model"]
    short = {t.user_attrs["deepens_acquisition_function"] for t in trials if is_level(t, "low")}
    assert short == {low_acquisition}
    # Full trainings 19 and 24 come after three full results: the objective's head, with the
    # sampler's acquisition (Thompson sampling by default).
    assert attrs(study.trials[19::5], "acquisition_function") == ["ts", "ts"]


def is_level(trial: FrozenTrial, level: str) -> bool:
    return trial.user_attrs.get("deepens_fidelity") == level


def test_pruned_short_runs_do_not_trigger_the_all_failed_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        study, _ = run(schedule("fixed"), 6)
    assert attrs(study.trials, "source")[5] == "model"


def test_full_trainings_stopped_by_optunas_pruner_are_not_trained_again() -> None:
    config = schedule("fixed", low_per_iteration=1, iterations_per_round=1, high_per_round=2)
    repeated = []
    for base in (
        optuna.pruners.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2),
        optuna.pruners.MedianPruner(1, n_warmup_steps=LOW_STEP + 1),
    ):
        study, _ = run(config, 18, pruner=LowFidelityPruner(base))
        high = [key(t) for t in study.trials if t.user_attrs["deepens_fidelity"] == "high"]
        repeated += [k for k in set(high) if high.count(k) > 1]
    assert not repeated  # Measured: trials 8 and 10 (halving), 16 and 17 (median) repeat.


def test_promotion_averages_the_short_run_rank_and_the_predicted_full_rank() -> None:
    low = np.array([0.9, 0.8, 0.7, 0.1])  # Short-run results: best first.
    predicted = np.array([0.0, 3.0, 2.0, 1.0])  # The model's predicted full results.
    # Average unit ranks: 0.75+0, 0.5+0.75, 0.25+0.5, 0+0.25.
    assert list(promotion_order(low, predicted)) == [1, 0, 2, 3]
    assert list(promotion_order(low, None)) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("options", "surrogate", "warned"),
    [
        ({"low_fidelity_acquisition": "pi"}, "auto", True),
        ({"high_fidelity_weight": 4.0}, "kernel", True),
        ({"low_fidelity_acquisition": "pi"}, "ensemble", False),
        ({}, "auto", False),
    ],
)
def test_the_ensembles_short_run_options_are_said_to_be_unused_under_the_kernel(
    options: dict[str, Any], surrogate: str, warned: bool
) -> None:
    config = MultiFidelity(low_step=LOW_STEP, full_step=FULL_STEP, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DeepEnsembleSampler(multi_fidelity=config, numeric_surrogate=surrogate)
    messages = [str(w.message) for w in caught if "short-run head" in str(w.message)]
    assert bool(messages) == warned
    if warned:
        assert 'numeric_surrogate="ensemble"' in messages[0]
        assert next(iter(options)) in messages[0]

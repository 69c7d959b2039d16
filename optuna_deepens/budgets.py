"""The best design at each of several budgets: chapter 8's epsilon-constraint search, generalised.

Chapter 8 fixes one latency (SwiftFormer-XS's) and searches the attention designs whose width is
matched to it. A user deploying to several devices, or unsure of the budget, wants the best design
at *each* of a few budgets and the trade-off between them. :func:`search_budgets` runs that search
with the same objective ``objective(trial, budget) -> value`` in one of two ways:

* ``"per_budget"``: one independent study per budget, the trials split evenly;
* ``"shared"``: one study whose first parameter is the budget (``suggest_categorical``). The
  sampler models value against design *and* budget, so what a trial teaches about a design at
  one budget may inform the others (with :class:`~optuna_deepens.DeepEnsembleSampler`, through
  the shared trunk), and trials go to the budgets where improvement is expected; but it must
  also learn how the budget changes every design, which costs more than it saves.

``benchmarks/budgets.py`` measured both on two families (20 seeds each, 2026-11-30): one study per
budget ends closer to every budget's optimum, on chapter 8's latency-matched structure
(``tests/budgeted.py``: mean regret 0.08 against 0.67 after 90 evaluations) and on NAS-Bench-201
with latency bounds (0.63 against 1.15 after 150), and its fits are cheaper; the shared study
only led after a third of the evaluations on the synthetic. So ``"per_budget"`` is the
default. The budget is whatever the objective makes of it: a latency ratio that sets
the width (``search_spaces.attention.SnapFormerConfig(latency_ratio=...)``), or a bound the
objective reports with ``trial.set_constraint``. Only feasible trials (every constraint
``<= 0``) count as a budget's design.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Literal

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens._validation import check_callable
from optuna_deepens._validation import check_int
from optuna_deepens.coordination import FIDELITY_ATTR

BudgetObjective = Callable[[optuna.Trial, float], float]
Strategy = Literal["per_budget", "shared"]
STRATEGIES: tuple[str, ...] = ("per_budget", "shared")
# Not multi-fidelity's ``deepens_budget`` (steps to train), which a study may carry beside it.
BUDGET_ATTR = "deepens_search_budget"
_LEGACY_BUDGET_ATTR = "deepens_budget"  # Before 2026-12-02, shared with multi-fidelity.


@dataclass(frozen=True)
class BudgetDesign:
    """The best feasible trial found at one budget (``trial`` is ``None`` if none was)."""

    budget: float
    trial: FrozenTrial | None
    cost: float  # The design's own cost (``cost_attr``), else the budget.

    @property
    def value(self) -> float | None:
        return None if self.trial is None else self.trial.value


@dataclass(frozen=True)
class BudgetSearch:
    """The outcome of :func:`search_budgets`: the studies and the best design per budget."""

    strategy: str
    direction: StudyDirection
    studies: tuple[optuna.Study, ...]
    designs: tuple[BudgetDesign, ...]  # One per budget, in the order given.
    n_evaluations: int  # Trials in all studies.

    def best(self, budget: float) -> FrozenTrial | None:
        """The best feasible trial at ``budget``."""
        for design in self.designs:
            if design.budget == budget:
                return design.trial
        raise KeyError(f"{budget!r} is not one of the budgets {[d.budget for d in self.designs]}.")

    @property
    def pareto(self) -> list[BudgetDesign]:
        """The designs no cheaper-or-equal design beats, cheapest first.

        A design at a larger budget that is no better than a cheaper one is dominated: the
        cheaper design is the one to deploy at both budgets.
        """
        sign = 1.0 if self.direction == StudyDirection.MAXIMIZE else -1.0
        found = [d for d in self.designs if d.trial is not None]
        # Cheapest first; at equal cost the better design first, so that it alone is kept.
        found.sort(key=lambda d: (d.cost, -sign * d.trial.value))  # type: ignore[union-attr]
        front: list[BudgetDesign] = []
        for design in found:
            assert design.trial is not None
            if not front or sign * design.trial.value > sign * front[-1].trial.value:  # type: ignore[union-attr]
                front.append(design)
        return front


def search_budgets(
    objective: BudgetObjective,
    budgets: Sequence[float],
    *,
    n_trials: int,
    strategy: Strategy = "per_budget",
    direction: str | StudyDirection = "maximize",
    sampler: Callable[[], BaseSampler] | None = None,
    storage: str | BaseStorage | None = None,
    study_name: str | None = None,
    budget_param: str = "budget",
    cost_attr: str | None = None,
    n_jobs: int = 1,
    show_progress_bar: bool = False,
) -> BudgetSearch:
    """Searches the best design at every budget, with ``n_trials`` evaluations in all.

    Args:
        objective: ``objective(trial, budget)``: builds, trains and scores a design at
            ``budget`` (and may report constraints with ``trial.set_constraint``).
        budgets: The budgets, each a number (a latency ratio, a bound in milliseconds, ...).
        n_trials: Evaluations in total, over all budgets. A study loaded from ``storage``
            counts the trials it already has, so a killed search resumes where it stopped.
        strategy: ``"per_budget"`` (one study per budget; measured better, see above) or
            ``"shared"`` (one study, the budget a parameter).
        direction: The objective's direction.
        sampler: Makes each study's sampler; default ``DeepEnsembleSampler()``.
        storage: Optuna storage (URL or object) holding the studies; ``None``: in memory.
        study_name: The shared study's name, or the prefix of the per-budget studies'
            (``"<name>-budget-<budget>"``). Required with ``storage``, to find them again.
        budget_param: The shared study's name for the budget parameter.
        cost_attr: A user attr holding a design's real cost (``"zc_latency_ms"``) for
            :attr:`BudgetSearch.pareto`; without it, a design costs its budget.
        n_jobs: Threads per study, passed to :meth:`optuna.Study.optimize`.
        show_progress_bar: Optuna's progress bar per study.
    """
    budgets = _check(budgets, n_trials, strategy, storage, study_name)
    check_callable(
        "search_budgets",
        "sampler",
        sampler,
        expected="a function that makes a sampler (one per study), e.g. "
        "sampler=lambda: optuna.samplers.TPESampler(seed=0), not a sampler instance",
    )
    direction = _direction(direction)
    make_sampler = sampler or _default_sampler
    run = dict(n_jobs=n_jobs, show_progress_bar=show_progress_bar)
    if strategy == "shared":
        study = _study(storage, study_name, direction, make_sampler())

        def shared(trial: optuna.Trial) -> float:
            budget = float(trial.suggest_categorical(budget_param, list(budgets)))
            trial.set_user_attr(BUDGET_ATTR, budget)
            return objective(trial, budget)

        study.optimize(shared, n_trials=_remaining(study, n_trials), **run)
        studies = (study,)
        trials_at = {b: _at_budget(study, b) for b in budgets}
    else:
        studies = ()
        trials_at = {}
        for i, budget in enumerate(budgets):
            name = None if study_name is None else f"{study_name}-budget-{budget:g}"
            study = _study(storage, name, direction, make_sampler())
            share = n_trials // len(budgets) + (i < n_trials % len(budgets))
            study.optimize(
                lambda trial, b=budget: _fixed_budget(objective, trial, b),
                n_trials=_remaining(study, share),
                **run,
            )
            studies += (study,)
            trials_at[budget] = study.get_trials(deepcopy=False)
    designs = tuple(_design(b, trials_at[b], direction, cost_attr) for b in budgets)
    n_evaluations = sum(len(s.get_trials(deepcopy=False)) for s in studies)
    return BudgetSearch(strategy, direction, studies, designs, n_evaluations)


def _check(
    budgets: Sequence[float],
    n_trials: int,
    strategy: str,
    storage: str | BaseStorage | None,
    study_name: str | None,
) -> tuple[float, ...]:
    values = tuple(float(b) for b in budgets)
    if not values or len(set(values)) != len(values) or not all(map(math.isfinite, values)):
        raise ValueError(
            f"search_budgets(budgets={list(budgets)!r}): give at least one budget, each a "
            "finite number, none twice."
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"search_budgets(strategy={strategy!r}): use one of {STRATEGIES}.")
    check_int("search_budgets", "n_trials", n_trials, minimum=1)
    if n_trials < len(values):
        raise ValueError(
            f"search_budgets(n_trials={n_trials}): fewer trials than the {len(values)} "
            "budgets; give at least one per budget."
        )
    if storage is not None and study_name is None:
        raise ValueError(
            "search_budgets(storage=...) needs study_name=..., so that a resumed search finds "
            "its studies again."
        )
    return values


def _direction(direction: str | StudyDirection) -> StudyDirection:
    if isinstance(direction, StudyDirection):
        return direction
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"search_budgets(direction={direction!r}): use 'maximize' or 'minimize'.")
    return StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE


def _default_sampler() -> BaseSampler:
    from optuna_deepens.sampler import DeepEnsembleSampler

    return DeepEnsembleSampler()


def _study(
    storage: str | BaseStorage | None,
    name: str | None,
    direction: StudyDirection,
    sampler: BaseSampler,
) -> optuna.Study:
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction,
        sampler=sampler,
        load_if_exists=name is not None,
    )


def _remaining(study: optuna.Study, n_trials: int) -> int:
    """Trials still to run: a resumed study keeps what finished (a killed RUNNING one is
    not counted, as Optuna's heartbeat will fail it)."""
    done = study.get_trials(deepcopy=False, states=_FINISHED)
    return max(0, n_trials - len(done))


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _fixed_budget(objective: BudgetObjective, trial: optuna.Trial, budget: float) -> float:
    trial.set_user_attr(BUDGET_ATTR, budget)
    return objective(trial, budget)


def _at_budget(study: optuna.Study, budget: float) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if _budget_of(t) == budget]


def _budget_of(trial: FrozenTrial) -> float | None:
    """The trial's design budget; a study written before the rename keeps its trials."""
    attrs = trial.user_attrs
    if BUDGET_ATTR in attrs or FIDELITY_ATTR in attrs:
        return attrs.get(BUDGET_ATTR)
    return attrs.get(_LEGACY_BUDGET_ATTR)


def _design(
    budget: float,
    trials: list[FrozenTrial],
    direction: StudyDirection,
    cost_attr: str | None,
) -> BudgetDesign:
    sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and _feasible(t)]
    if not feasible:
        return BudgetDesign(budget, None, budget)
    best = max(feasible, key=lambda t: sign * t.value)
    cost = best.user_attrs.get(cost_attr, budget) if cost_attr else budget
    return BudgetDesign(budget, best, float(cost))


def _feasible(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())

"""Finished trials to training data: encoded inputs and named targets with missing values.

Targets are in the *maximisation* convention (a minimised objective is negated), so the rest of
the sampler never branches on the study direction. Each target is a column that may be ``NaN``
for rows that lack it, which is how zero-cost metrics and fidelities will join as further heads.

The objective and low-fidelity results are modelled after a rank-based Gaussian copula, the
zero-cost metrics in log space (:mod:`optuna_deepens.transforms` says why). Zero-cost metrics
recorded on a trial (``zc_*`` user attrs) are further targets: every finished trial that
recorded them contributes, pruned and failed ones included, since the metrics describe the
network, not how its training went.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import math

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens.coordination import SOURCE_ATTR
from optuna_deepens.coordination import trial_id
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.multi_objective import distance_to_front
from optuna_deepens.multi_objective import non_dominated
from optuna_deepens.transforms import OBJECTIVE_SCALES
from optuna_deepens.transforms import ObjectiveTransform
from optuna_deepens.transforms import direction_sign
from optuna_deepens.transforms import metric_target
from optuna_deepens.transforms import step_condition
from optuna_deepens.zero_cost import read_recorded

OBJECTIVE = "objective"
LOW_FIDELITY = "low_fidelity"
CONSTRAINT_PREFIX = "constraint:"
_INFEASIBLE_PENALTY = 1e6  # Far beyond any model-scale value: infeasible results rank last.


def objective_head(index: int) -> str:
    """The head of the ``index``-th objective: ``"objective"``, ``"objective_1"``, ..."""
    return OBJECTIVE if index == 0 else f"{OBJECTIVE}_{index}"


@dataclass(frozen=True)
class Objectives:
    """What the study optimises, in the model's terms.

    Args:
        directions: The study's directions, one per objective.
        metrics: Objective index -> zero-cost metric (``"latency_ms"``) that the objective
            returns. Such an objective is read from the metric's head (pretrained, exact for
            measured trials) instead of being learnt again as a noisy target.
        bounds: Zero-cost metric -> largest feasible value (``{"latency_ms": 5.0}``).
    """

    directions: tuple[StudyDirection, ...]
    metrics: Mapping[int, str] = field(default_factory=dict)
    bounds: Mapping[str, float] = field(default_factory=dict)

    @property
    def heads(self) -> tuple[str, ...]:
        """The head whose prediction is each objective."""
        return tuple(self.metrics.get(i, objective_head(i)) for i in range(len(self.directions)))

    @property
    def is_multi(self) -> bool:
        return len(self.directions) > 1

    @property
    def signs(self) -> np.ndarray:
        return np.array([direction_sign(d) for d in self.directions])


@dataclass(frozen=True)
class TrainingData:
    internal: np.ndarray  # [n, n_params], NaN = inactive.
    features: np.ndarray  # [n, n_features]
    targets: dict[str, np.ndarray]  # name -> [n], NaN = missing; fidelities transformed.
    transforms: dict[str, ObjectiveTransform]  # Per learnt objective or fidelity: to model scale.
    conditions: dict[str, np.ndarray]  # Conditioned head -> [n] (the low-fidelity step).
    trial_ids: frozenset[int]
    n_clipped: int  # Infinite objective values replaced by the worst/best finite one.
    # The first ``len(observed)`` rows are the usable trials: their objectives on the model's
    # scale (larger is better) and whether they satisfied every constraint.
    observed: np.ndarray  # [n_usable, k]
    feasible: np.ndarray  # [n_usable]
    objectives: Objectives
    constraint_heads: tuple[str, ...]
    # [n_usable]: drawn at startup (no model chose it), from the trials' ``deepens_source``.
    startup: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def best(self, head: str = OBJECTIVE) -> float | None:
        """Best model-scale value of ``head`` (at the low step for the low fidelity).

        For the objective, the best *feasible* value; with none feasible, just below the worst
        result, so that any feasible architecture counts as an improvement.
        """
        values = self.targets.get(head)
        if values is None:
            return None
        if head == OBJECTIVE and len(self.feasible) and not self.feasible.all():
            if not self.feasible.any():
                finite = values[np.isfinite(values)]
                return float(finite.min()) - 1.0 if len(finite) else None
            values = values[: len(self.feasible)][self.feasible]
        if head in self.conditions and np.any(np.isfinite(values[self.conditions[head] == 0])):
            values = values[self.conditions[head] == 0.0]  # Compare like with like if we can.
        finite = values[np.isfinite(values)]
        return float(finite.max()) if len(finite) else None

    def ranking(self, head: str = OBJECTIVE) -> np.ndarray:
        """A score per row to choose incumbents by: larger is better, ``NaN`` for no result.

        ``head``'s targets; with several objectives, minus the distance to the feasible front
        (0 on it). Infeasible results rank after every feasible one.
        """
        n = len(self.feasible)
        if self.objectives.is_multi:
            feasible = self.observed[self.feasible]
            front = feasible[non_dominated(feasible)]
            scores = np.full(len(self.internal), np.nan)
            scores[:n] = -distance_to_front(front, self.observed)
        else:
            scores = self.targets[head]
            if head != OBJECTIVE or self.feasible.all():
                return scores
            scores = scores.copy()
        scores[:n][~self.feasible] -= _INFEASIBLE_PENALTY
        return scores

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Zero-cost metric heads: every target not an objective, fidelity or constraint."""
        learnt = set(self.transforms) | set(self.constraint_heads)
        return tuple(name for name in self.targets if name not in learnt)

    @property
    def learnt_heads(self) -> list[str]:
        """Objectives and fidelities learnt from results, then constraints, in a fixed order."""
        return [*self.transforms, *self.constraint_heads]


def is_usable(trial: FrozenTrial) -> bool:
    """A COMPLETE trial whose values are numbers (Optuna already fails NaN results)."""
    return (
        trial.state == TrialState.COMPLETE
        and trial.values is not None
        and not any(math.isnan(v) for v in trial.values)
    )


def usable_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_usable(t)]


def objective_values(
    trials: Sequence[FrozenTrial], direction: StudyDirection, index: int = 0
) -> np.ndarray:
    """The ``index``-th objective of ``trials`` in the maximisation convention."""
    return direction_sign(direction) * np.array([t.values[index] for t in trials], dtype=float)


def low_fidelity_results(trial: FrozenTrial, low_step: int) -> list[tuple[int, float]]:
    """``(step, value)`` low-fidelity observations of a finished trial.

    The value at ``low_step`` when reported; and for a trial that did not complete (pruned by
    any pruner, or failed) also its last value, at the step where it stopped. A complete
    trial's final value is the high fidelity, never a low one.
    """
    values = _finite_intermediate_values(trial)
    if not values:
        return []
    found = []
    if low_step in values:
        found.append((low_step, values[low_step]))
    if trial.state != TrialState.COMPLETE:
        last = max(values)
        if last != low_step:
            found.append((last, values[last]))
    return found


def value_from_step(trial: FrozenTrial, step: int) -> float | None:
    """The first finite intermediate value reported at ``step`` or later, if any."""
    values = _finite_intermediate_values(trial)
    later = [s for s in values if s >= step]
    return values[min(later)] if later else None


def _finite_intermediate_values(trial: FrozenTrial) -> dict[int, float]:
    return {
        step: value
        for step, value in trial.intermediate_values.items()
        if value is not None and math.isfinite(value)
    }


def build_training_data(
    trials: Sequence[FrozenTrial],
    encoder: SearchSpaceEncoder,
    objectives: Objectives | StudyDirection,
    *,
    low_step: int | None = None,
    scale: str = "copula",
) -> TrainingData:
    """One row per usable trial, then rows for other finished trials that carry information.

    Rows: every COMPLETE trial (the objectives, and its low-fidelity value when it reported
    one); with ``low_step``, one row per further low-fidelity observation (a pruned
    trial's value at the step where it stopped); and finished trials with recorded metrics or
    constraints. Infinite objective values are clipped to the finite range. ``scale``: the
    objective's and short runs' map to model scale, a key of
    :data:`~optuna_deepens.transforms.OBJECTIVE_SCALES`.
    """
    if isinstance(objectives, StudyDirection):
        objectives = Objectives((objectives,))
    usable = usable_trials(trials)
    finished = [t for t in trials if t.state.is_finished() and t.params]
    rows, low = _rows(usable, finished, low_step)
    internal = encoder.to_internal([t.params for t in rows])
    targets: dict[str, np.ndarray] = {}
    transforms: dict[str, ObjectiveTransform] = {}
    fit = OBJECTIVE_SCALES[scale].fit
    n_clipped = _add_objectives(targets, transforms, usable, len(rows), objectives, fit)
    conditions = {}
    if low_step is not None:
        sign = direction_sign(objectives.directions[0])
        low_values, _ = _clip_infinite(sign * np.array([v for _, _, v in low], dtype=float))
        transforms[LOW_FIDELITY] = fit(low_values)
        targets[LOW_FIDELITY] = np.full(len(rows), np.nan)
        conditions[LOW_FIDELITY] = np.zeros(len(rows))
        for (row, step, _), value in zip(low, transforms[LOW_FIDELITY](low_values)):
            targets[LOW_FIDELITY][row] = value
            conditions[LOW_FIDELITY][row] = step_condition(step, low_step)
    constraint_heads = _add_constraints(targets, rows)
    _add_metrics(targets, rows, usable, objectives)
    observed = _observed(targets, usable, objectives)
    return TrainingData(
        internal=internal,
        features=encoder.encode(internal),
        targets=targets,
        transforms=transforms,
        conditions=conditions,
        trial_ids=frozenset(trial_id(t) for t in rows),
        n_clipped=n_clipped,
        observed=observed,
        feasible=_feasible(targets, constraint_heads, usable, objectives),
        objectives=objectives,
        constraint_heads=constraint_heads,
        startup=np.array([t.user_attrs.get(SOURCE_ATTR) == "startup" for t in usable], bool),
    )


def _rows(
    usable: list[FrozenTrial], finished: list[FrozenTrial], low_step: int | None
) -> tuple[list[FrozenTrial], list[tuple[int, int, float]]]:
    """The trials behind the rows, and the low-fidelity observations ``(row, step, value)``."""
    usable_rows = {trial_id(t): i for i, t in enumerate(usable)}
    rows: list[FrozenTrial] = list(usable)
    low: list[tuple[int, int, float]] = []
    if low_step is not None:
        for t in finished:
            for step, value in low_fidelity_results(t, low_step):
                if trial_id(t) in usable_rows and step == low_step:
                    row = usable_rows[trial_id(t)]
                else:
                    row = len(rows)
                    rows.append(t)
                low.append((row, step, value))
    in_rows = {trial_id(t) for t in rows}
    rows += [
        t
        for t in finished
        if trial_id(t) not in in_rows and (read_recorded(t.user_attrs) or t.constraints)
    ]
    return rows, low


def _add_objectives(
    targets: dict[str, np.ndarray],
    transforms: dict[str, ObjectiveTransform],
    usable: list[FrozenTrial],
    n_rows: int,
    objectives: Objectives,
    fit: Callable[[np.ndarray], ObjectiveTransform],
) -> int:
    """Targets of the learnt objectives on model scale; returns the values clipped."""
    n_clipped = 0
    for i, direction in enumerate(objectives.directions):
        if i in objectives.metrics:
            continue
        values, clipped = _clip_infinite(objective_values(usable, direction, i))
        n_clipped += clipped
        name = objective_head(i)
        transforms[name] = fit(values)
        targets[name] = np.full(n_rows, np.nan)
        targets[name][: len(usable)] = transforms[name](values)
    return n_clipped


def _add_constraints(targets: dict[str, np.ndarray], rows: list[FrozenTrial]) -> tuple[str, ...]:
    """One target per ``Trial.set_constraint`` key, in its own units (feasible when <= 0)."""
    recorded = [t.constraints for t in rows]
    heads = []
    for key in sorted(set().union(*recorded)):
        name = CONSTRAINT_PREFIX + key
        targets[name] = np.array([c.get(key, np.nan) for c in recorded], dtype=float)
        heads.append(name)
    return tuple(heads)


def _add_metrics(
    targets: dict[str, np.ndarray],
    rows: list[FrozenTrial],
    usable: list[FrozenTrial],
    objectives: Objectives,
) -> None:
    """Zero-cost metric targets (log scale), completed by objectives that return a metric."""
    recorded = [read_recorded(t.user_attrs) for t in rows]
    for name in sorted(set().union(*recorded, objectives.metrics.values())):
        raw = np.array([metrics.get(name, np.nan) for metrics in recorded], dtype=float)
        for i, metric in objectives.metrics.items():
            if metric == name:  # The objective is the metric: where not recorded, use it.
                returned = np.array([t.values[i] for t in usable], dtype=float)
                raw[: len(usable)] = np.where(
                    np.isnan(raw[: len(usable)]), returned, raw[: len(usable)]
                )
        targets[name] = np.where(np.isnan(raw), np.nan, metric_target(raw))


def _observed(
    targets: dict[str, np.ndarray], usable: list[FrozenTrial], objectives: Objectives
) -> np.ndarray:
    """The usable trials' objectives on the model's scale: ``[n_usable, k]``, larger is better."""
    columns = []
    for i, (head, sign) in enumerate(zip(objectives.heads, objectives.signs)):
        if i in objectives.metrics:
            returned = np.array([t.values[i] for t in usable], dtype=float)
            columns.append(sign * metric_target(returned))
        else:
            columns.append(targets[head][: len(usable)])
    return np.stack(columns, axis=1) if columns else np.empty((len(usable), 0))


def _feasible(
    targets: dict[str, np.ndarray],
    constraint_heads: tuple[str, ...],
    usable: list[FrozenTrial],
    objectives: Objectives,
) -> np.ndarray:
    """Usable trials that satisfied every recorded constraint and every declared bound."""
    n = len(usable)
    feasible = np.ones(n, dtype=bool)
    for head in constraint_heads:
        feasible &= ~(targets[head][:n] > 0)  # A missing constraint value does not rule out.
    for metric, bound in objectives.bounds.items():
        if metric in targets:
            feasible &= ~(targets[metric][:n] > metric_target(np.array([bound]))[0])
    return feasible


def _clip_infinite(values: np.ndarray) -> tuple[np.ndarray, int]:
    infinite = ~np.isfinite(values)
    if infinite.any():
        finite = values[~infinite]
        low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 0.0)
        values = np.clip(values, low, high)
    return values, int(infinite.sum())


def fidelity_rows(data: TrainingData, full_condition: float) -> tuple[np.ndarray, np.ndarray]:
    """Features with the fidelity as a last column, and their targets, for one model of both
    fidelities: every full result at ``full_condition``, every short run at its step's
    condition (0 at the low step). Each on its own copula scale, as the ensemble's heads."""
    full = np.isfinite(data.targets[OBJECTIVE])
    low = np.isfinite(data.targets[LOW_FIDELITY])
    features = np.concatenate(
        [
            np.c_[data.features[full], np.full(int(full.sum()), full_condition)],
            np.c_[data.features[low], data.conditions[LOW_FIDELITY][low]],
        ]
    )
    targets = np.concatenate([data.targets[OBJECTIVE][full], data.targets[LOW_FIDELITY][low]])
    return features, targets

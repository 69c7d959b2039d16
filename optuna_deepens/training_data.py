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

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens.coordination import trial_id
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.transforms import CopulaTransform
from optuna_deepens.transforms import direction_sign
from optuna_deepens.transforms import metric_target
from optuna_deepens.transforms import step_condition
from optuna_deepens.zero_cost import read_recorded

OBJECTIVE = "objective"
LOW_FIDELITY = "low_fidelity"


@dataclass(frozen=True)
class TrainingData:
    internal: np.ndarray  # [n, n_params], NaN = inactive.
    features: np.ndarray  # [n, n_features]
    targets: dict[str, np.ndarray]  # name -> [n], NaN = missing; fidelities transformed.
    transforms: dict[str, CopulaTransform]  # Per fidelity head: values to model scale.
    conditions: dict[str, np.ndarray]  # Conditioned head -> [n] (the low-fidelity step).
    trial_ids: frozenset[int]
    n_clipped: int  # Infinite objective values replaced by the worst/best finite one.

    def best(self, head: str = OBJECTIVE) -> float | None:
        """Best model-scale value of ``head`` (at the low step for the low fidelity)."""
        values = self.targets.get(head)
        if values is None:
            return None
        if head in self.conditions and np.any(np.isfinite(values[self.conditions[head] == 0])):
            values = values[self.conditions[head] == 0.0]  # Compare like with like if we can.
        finite = values[np.isfinite(values)]
        return float(finite.max()) if len(finite) else None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.targets if name not in self.transforms)


def is_usable(trial: FrozenTrial) -> bool:
    """A COMPLETE trial whose value is a number (Optuna already fails NaN results)."""
    return (
        trial.state == TrialState.COMPLETE
        and trial.value is not None
        and not math.isnan(trial.value)
    )


def usable_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_usable(t)]


def objective_values(trials: Sequence[FrozenTrial], direction: StudyDirection) -> np.ndarray:
    return direction_sign(direction) * np.array([t.value for t in trials], dtype=float)


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
    direction: StudyDirection,
    *,
    low_step: int | None = None,
) -> TrainingData:
    """One row per usable trial, then rows for other finished trials that carry information.

    Rows: every COMPLETE trial (the objective, and its low-fidelity value when it reported
    one); with ``low_step``, one row per further low-fidelity observation (a pruned
    trial's value at the step where it stopped); and finished trials with recorded metrics.
    Infinite objective values are clipped to the finite range.
    """
    usable = usable_trials(trials)
    usable_rows = {trial_id(t): i for i, t in enumerate(usable)}
    finished = [t for t in trials if t.state.is_finished() and t.params]
    rows: list[FrozenTrial] = list(usable)
    low: list[tuple[int, int, float]] = []  # (row, step, value)
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
    rows += [t for t in finished if trial_id(t) not in in_rows and read_recorded(t.user_attrs)]
    internal = encoder.to_internal([t.params for t in rows])
    values, n_clipped = _clip_infinite(objective_values(usable, direction))
    transforms = {OBJECTIVE: CopulaTransform.fit(values)}
    objective = np.full(len(rows), np.nan)
    objective[: len(usable)] = transforms[OBJECTIVE](values)
    targets = {OBJECTIVE: objective}
    conditions = {}
    if low_step is not None:
        sign = direction_sign(direction)
        low_values, _ = _clip_infinite(sign * np.array([v for _, _, v in low], dtype=float))
        transforms[LOW_FIDELITY] = CopulaTransform.fit(low_values)
        targets[LOW_FIDELITY] = np.full(len(rows), np.nan)
        conditions[LOW_FIDELITY] = np.zeros(len(rows))
        for (row, step, _), value in zip(low, transforms[LOW_FIDELITY](low_values)):
            targets[LOW_FIDELITY][row] = value
            conditions[LOW_FIDELITY][row] = step_condition(step, low_step)
    recorded = [read_recorded(t.user_attrs) for t in rows]
    for name in sorted(set().union(*recorded)):
        raw = np.array([metrics.get(name, np.nan) for metrics in recorded], dtype=float)
        targets[name] = np.where(np.isnan(raw), np.nan, metric_target(raw))
    return TrainingData(
        internal=internal,
        features=encoder.encode(internal),
        targets=targets,
        transforms=transforms,
        conditions=conditions,
        trial_ids=frozenset(trial_id(t) for t in rows),
        n_clipped=n_clipped,
    )


def _clip_infinite(values: np.ndarray) -> tuple[np.ndarray, int]:
    infinite = ~np.isfinite(values)
    if infinite.any():
        finite = values[~infinite]
        low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 0.0)
        values = np.clip(values, low, high)
    return values, int(infinite.sum())

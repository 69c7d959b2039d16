"""Finished trials to training data: encoded inputs and named targets with missing values.

Targets are in the *maximisation* convention (a minimised objective is negated), so the rest of
the sampler never branches on the study direction. Each target is a column that may be ``NaN``
for rows that lack it, which is how zero-cost metrics and fidelities will join as further heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens.encoding import SearchSpaceEncoder

OBJECTIVE = "objective"


@dataclass(frozen=True)
class TrainingData:
    internal: np.ndarray  # [n, n_params], NaN = inactive.
    features: np.ndarray  # [n, n_features]
    targets: dict[str, np.ndarray]  # name -> [n], NaN = missing.
    trial_ids: frozenset[int]
    n_clipped: int  # Infinite objective values replaced by the worst/best finite one.

    @property
    def best(self) -> float:
        return float(np.nanmax(self.targets[OBJECTIVE]))


def usable_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials whose value is a number (Optuna already fails NaN results)."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)
    ]


def objective_values(trials: Sequence[FrozenTrial], direction: StudyDirection) -> np.ndarray:
    sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
    return sign * np.array([t.value for t in trials], dtype=float)


def build_training_data(
    trials: Sequence[FrozenTrial], encoder: SearchSpaceEncoder, direction: StudyDirection
) -> TrainingData:
    """Encode ``usable_trials(trials)``; infinite values are clipped to the finite range."""
    usable = usable_trials(trials)
    internal = encoder.to_internal([t.params for t in usable])
    values = objective_values(usable, direction)
    infinite = ~np.isfinite(values)
    if infinite.any():
        finite = values[~infinite]
        low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 0.0)
        values = np.clip(values, low, high)
    return TrainingData(
        internal=internal,
        features=encoder.encode(internal),
        targets={OBJECTIVE: values},
        trial_ids=frozenset(t._trial_id for t in usable),
        n_clipped=int(infinite.sum()),
    )

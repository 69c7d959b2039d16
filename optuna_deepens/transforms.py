"""Every map between a study's values and the scale the ensemble learns, each with its inverse.

The model works in one convention: larger is better (:func:`direction_sign` flips a minimised
objective), and each target is transformed before training:

* the objective and the low-fidelity result by :class:`CopulaTransform`, a rank-based Gaussian
  copula (``objective_scale="copula"``, the default). NAS values are heavy tailed (NAS-Bench-201
  has many networks stuck near chance, so the standard deviation of its accuracies is 13 points
  while its 50 best lie within 0.4): on the raw scale the model cannot resolve the top, and any
  margin or spread in raw units is dominated by the failures. ``"standardized"`` keeps the
  values' distances (:class:`Standardizer` alone), for objectives without such tails;
* zero-cost metrics by :class:`LogTransform`: parameters and FLOPs span orders of magnitude;
* then every head's targets by :class:`Standardizer`, inside the ensemble, so that one
  learning rate and one loss scale suit every head.

The low-fidelity head also reads the step a result was taken at, through
:func:`step_condition`.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from optuna.study import StudyDirection
import torch


def direction_sign(direction: StudyDirection) -> float:
    """``+1`` for a maximised study, ``-1`` for a minimised one: values times it are maximised."""
    return 1.0 if direction == StudyDirection.MAXIMIZE else -1.0


@dataclass(frozen=True)
class CopulaTransform:
    """Monotone map of observed values to standard-normal quantiles of their ranks, and back."""

    sorted_values: np.ndarray
    sorted_scores: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> CopulaTransform:
        unique, inverse = np.unique(values, return_inverse=True)
        ranks = np.empty(len(values))
        ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
        mean_rank = np.bincount(inverse, ranks) / np.bincount(inverse)  # Ties share a rank.
        quantiles = (mean_rank + 0.5) / len(values)
        scores = torch.special.ndtri(torch.as_tensor(quantiles, dtype=torch.float64)).numpy()
        return cls(sorted_values=unique, sorted_scores=scores)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return _interpolate(values, self.sorted_values, self.sorted_scores)

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        return _interpolate(scores, self.sorted_scores, self.sorted_values)


def _interpolate(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Piecewise linear, extended linearly beyond the ends (predictions can beat the best)."""
    if len(xs) < 2:
        return np.zeros_like(x, dtype=float) + (ys[0] if len(ys) else 0.0)
    y = np.interp(x, xs, ys)
    low_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    high_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    y = np.where(x < xs[0], ys[0] + (x - xs[0]) * low_slope, y)
    return np.where(x > xs[-1], ys[-1] + (x - xs[-1]) * high_slope, y)


class LogTransform:
    """Model scale of a zero-cost metric: its logarithm (metrics are non-negative)."""

    _FLOOR = 1e-12  # A zero metric (a parameter-free cell) maps to a finite value.

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(np.asarray(values, dtype=float), self._FLOOR))

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        return np.exp(scores)


metric_target = LogTransform()


@dataclass
class Standardizer:
    """Zero mean and unit spread of a head's finite targets; a constant head keeps its scale."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            return cls()
        std = float(np.std(finite))
        return cls(float(np.mean(finite)), std if std > 1e-12 else 1.0)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        return scores * self.std + self.mean


# ``objective_scale`` -> the transform of the objective and low-fidelity values to model scale.
OBJECTIVE_SCALES: dict[str, type[CopulaTransform] | type[Standardizer]] = {
    "copula": CopulaTransform,
    "standardized": Standardizer,
}
ObjectiveTransform = CopulaTransform | Standardizer


def step_condition(step: float, low_step: int) -> float:
    """What the low-fidelity head reads of a step: 0 at ``low_step``, log-scaled."""
    return math.log(max(step, 1e-9) / low_step)

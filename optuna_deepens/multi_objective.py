"""Pareto fronts and hypervolume, in the maximisation convention of the model's scale.

Every objective is on the model's scale (larger is better; see :mod:`optuna_deepens.transforms`).
The transforms are monotone, so they keep which architecture dominates which: the front is the
same as in the study's own units, and the hypervolume is measured where each objective is
spread evenly (copula) or by orders of magnitude (log of a zero-cost metric).
"""

from __future__ import annotations

import numpy as np

from optuna_deepens import coordination

_REFERENCE_MARGIN = 0.1  # The reference point lies this share of the range below the worst.


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``points`` ``[n, k]`` that no other row dominates."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)
    dominated_by = at_least & better  # [i, j]: row i dominates row j.
    return ~dominated_by.any(axis=0)


def reference_point(points: np.ndarray) -> np.ndarray:
    """Just below the worst observed value of each objective, so every result counts."""
    low, high = points.min(axis=0), points.max(axis=0)
    spread = np.where(high > low, high - low, 1.0)
    return low - _REFERENCE_MARGIN * spread


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` above ``reference``."""
    above = points[(points > reference).all(axis=1)]
    if len(above) == 0:
        return 0.0
    if points.shape[1] == 2:
        return float(_hypervolume_2d(above[None], reference)[0])
    return coordination.hypervolume(above, reference)


def improvement(front: np.ndarray, reference: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Hypervolume each candidate ``[n, k]`` would add to ``front`` ``[p, k]``.

    The volume of the candidate's box above the reference, less the part the front already
    dominates (the hypervolume of the front clipped to the box).
    """
    clipped = np.maximum(candidates, reference)
    box = np.prod(clipped - reference, axis=1)
    if len(front) == 0:
        return box
    inside = np.minimum(front[None, :, :], clipped[:, None, :])  # [n, p, k]
    if candidates.shape[1] == 2:
        covered = _hypervolume_2d(inside, reference)
    else:
        free = distance_to_front(front, candidates) <= 0
        covered = box.copy()
        for i in np.flatnonzero(free & (box > 0)):
            covered[i] = hypervolume(inside[i], reference)
    return np.maximum(box - covered, 0.0)


def distance_to_front(front: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The smallest equal gain in every objective that lifts each candidate off domination.

    0 for a candidate that no front member dominates. Orders the candidates that add no
    hypervolume: the nearest to the front first.
    """
    if len(front) == 0:
        return np.zeros(len(candidates))
    margin = (front[None, :, :] - candidates[:, None, :]).min(axis=2)  # [n, p]
    return np.maximum(margin.max(axis=1), 0.0)


def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume of each set ``points[i]`` ``[p, 2]`` (points below the reference add 0)."""
    shifted = np.maximum(points - reference, 0.0)
    order = np.argsort(-shifted[:, :, 0], axis=1, kind="stable")
    x = np.take_along_axis(shifted[:, :, 0], order, axis=1)
    y = np.take_along_axis(shifted[:, :, 1], order, axis=1)
    # Left to right by decreasing x, each point adds the strip above the highest y so far.
    highest = np.concatenate([np.zeros((len(y), 1)), np.maximum.accumulate(y, axis=1)[:, :-1]], 1)
    return (x * np.maximum(y - highest, 0.0)).sum(axis=1)

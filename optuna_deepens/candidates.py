"""Candidate architectures for one acquisition step, in the encoder's internal matrix form.

Scoring is cheap and vectorised, so each trial scores thousands of candidates: uniform draws that
cover the space, plus 1-to-3-edit mutations of several of the best trials so far, which is where
a NAS optimum is usually found (local search is a strong NAS baseline for this reason).
Every candidate carries a value for *every* parameter of the union space, so that a branch the
objective opens is filled by the model's choice, and an activity mask for what the model sees.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from optuna.distributions import CategoricalDistribution

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import scale_numeric
from optuna_deepens.encoding import unscale_numeric
from optuna_deepens.taken import TakenArchitectures

_LOCAL_STEP_SCALE = 0.15  # Std of a numeric edit in the [0, 1] scaled space.


def sample_uniform(encoder: SearchSpaceEncoder, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows drawing every parameter independently and uniformly (in its scaled space)."""
    internal = np.empty((n, encoder.n_params))
    for j, distribution in enumerate(encoder.distributions):
        if isinstance(distribution, CategoricalDistribution):
            internal[:, j] = rng.integers(len(distribution.choices), size=n)
        else:
            internal[:, j] = unscale_numeric(distribution, rng.random(n))
    return internal


def grid(encoder: SearchSpaceEncoder, max_rows: int) -> np.ndarray | None:
    """Every combination of values of an all-discrete space; ``None`` if continuous or larger."""
    axes = []
    for distribution in encoder.distributions:
        if isinstance(distribution, CategoricalDistribution):
            axes.append(np.arange(len(distribution.choices), dtype=float))
        elif distribution.step is not None:
            low, high, step = distribution.low, distribution.high, distribution.step
            axes.append(np.arange(low, high + step / 2, step, dtype=float))
        else:
            return None  # A continuous parameter has no grid.
        if np.prod([len(a) for a in axes], dtype=float) > max_rows:
            return None
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1).reshape(-1, encoder.n_params)


def mutate(
    encoder: SearchSpaceEncoder,
    parents: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    max_edits: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` children of ``parents`` (internal rows, NaN = inactive), 1-``max_edits`` edits each.

    An edit changes one *active* parameter: a categorical moves to another choice, a number
    takes a local Gaussian step in its scaled space or, one time in three, a fresh uniform value.
    Inactive entries of a parent are filled with uniform draws, so the child has values for
    branches an edit may open.

    Returns:
        The children and the index of each child's parent.
    """
    parent_index = rng.integers(len(parents), size=n)
    children = parents[parent_index].copy()
    filler = sample_uniform(encoder, n, rng)
    inactive = np.isnan(children)
    children[inactive] = filler[inactive]

    n_edits = rng.integers(1, max_edits + 1, size=n)
    # Random priorities over the active parameters; the lowest n_edits are edited.
    priority = np.where(inactive, np.inf, rng.random(children.shape))
    rank = np.argsort(np.argsort(priority, axis=1), axis=1)
    edit = (rank < n_edits[:, None]) & ~inactive

    for j, distribution in enumerate(encoder.distributions):
        rows = np.flatnonzero(edit[:, j])
        if len(rows) == 0:
            continue
        if isinstance(distribution, CategoricalDistribution):
            k = len(distribution.choices)
            shift = rng.integers(1, k, size=len(rows)) if k > 1 else np.zeros(len(rows))
            children[rows, j] = (children[rows, j] + shift) % max(k, 1)
        else:
            unit = scale_numeric(distribution, children[rows, j])
            local = unit + rng.normal(0.0, _LOCAL_STEP_SCALE, size=len(rows))
            fresh = rng.random(len(rows))
            unit = np.where(rng.random(len(rows)) < 1 / 3, fresh, local)
            moved = unscale_numeric(distribution, unit)
            # A step too small to leave its grid point is redrawn, so every edit is real.
            for _ in range(16):
                same = moved == children[rows, j]
                if not same.any():
                    break
                moved[same] = unscale_numeric(distribution, rng.random(int(same.sum())))
            children[rows, j] = moved
    return children, parent_index


def deduplicate(
    encoder: SearchSpaceEncoder,
    values: np.ndarray,
    active: np.ndarray,
    taken: TakenArchitectures,
) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Drop rows that repeat another trial's architecture, or another row's active part.

    Args:
        values: Full internal rows (every parameter valued): what the sampler returns.
        active: Boolean mask of the parameters the model sees as active.
        taken: Finished, running and proposed architectures of other trials.

    Returns:
        The kept values, their masks and their keys (active entries only).
    """
    keys = encoder.keys(np.where(active, values, np.nan))
    free = ~taken.contains(values)
    seen: set[Hashable] = set()
    keep: list[int] = []
    kept_keys: list[Hashable] = []
    for i, key in enumerate(keys):
        if not free[i] or key in seen:
            continue
        seen.add(key)
        keep.append(i)
        kept_keys.append(key)
    return values[keep], active[keep], kept_keys

"""Local optimisation of the acquisition over the numeric parameters of the best candidates.

Candidates are random draws and edits of the best trials, so a categorical structure the study
has not tried comes with random numbers (a random width, a random learning rate), while the
structures it has tried come with numbers its trials already refined. Scored as they are, the
untried ones look worse than they are, and the search keeps refining the numbers of a few
structures (issue 18: 77% of the guided trials of a mixed conditional space went to structures
already evaluated). Here the best candidates' numeric parameters climb the acquisition, with
their categorical choices fixed, in shrinking Gaussian steps: the role of the continuous part of
Optuna's ``optim_mixed`` for its GP (gradient steps on the continuous parameters, line searches
on the discrete ones). The steps need no gradient: a member drawn for Thompson sampling is a
piecewise-linear network, and a few hundred forward passes cost less than one fit. Where the
GP scores with its exact moments (log EI, the default with numbers), :func:`polish` then ends
the continuous numbers on the acquisition's gradient, as ``optim_mixed`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import torch

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import scale_numeric
from optuna_deepens.encoding import unscale_numeric

# Candidates whose numbers are optimised, steps tried per candidate and round (the best is
# kept if better), and the step (std in the [0, 1] scaled space) of the first two rounds; each
# further two rounds halve it.
N_STARTS = 8
N_STEPS = 16
N_ROUNDS = 8
FIRST_STEP = 0.2
# L-BFGS iterations of the gradient polish, and how close to a bound its sigmoid starts.
N_POLISH_ITERATIONS = 50
_EDGE = 1e-6


def numeric_columns(encoder: SearchSpaceEncoder) -> np.ndarray:
    """Columns of the float and int parameters."""
    return _columns(encoder, lambda d: not isinstance(d, CategoricalDistribution))


def continuous_columns(encoder: SearchSpaceEncoder) -> np.ndarray:
    """Columns of the float parameters without a ``step``: where a gradient means something."""
    return _columns(encoder, lambda d: isinstance(d, FloatDistribution) and d.step is None)


def _columns(encoder: SearchSpaceEncoder, keep: Callable[[BaseDistribution], bool]) -> np.ndarray:
    return np.array([j for j, d in enumerate(encoder.distributions) if keep(d)], dtype=int)


def climb(
    encoder: SearchSpaceEncoder,
    starts: np.ndarray,
    active: np.ndarray,
    acquisition: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """The ``starts`` (internal rows) with their active numeric values moved uphill.

    Args:
        starts: ``[n, n_params]`` full internal rows.
        active: ``[n, n_params]`` which parameters each row asks; only active numbers move.
        acquisition: Scores rows (inactive entries ``NaN``); larger is better. It must score a
            row the same way at every call (one Thompson member for the whole climb).
        rng: Draws the steps.

    Returns:
        ``[n, n_params]``: each start, or a better row under ``acquisition``.
    """
    columns = numeric_columns(encoder)
    movable = active[:, columns]
    if len(columns) == 0 or not movable.any():
        return starts
    distributions = [encoder.distributions[j] for j in columns]
    current = starts.copy()
    current_score = acquisition(np.where(active, current, np.nan))
    n = len(current)
    for round_ in range(N_ROUNDS):
        step = FIRST_STEP / 2 ** (round_ // 2)
        trial = np.repeat(current, N_STEPS, axis=0)
        mask = _moves(np.repeat(movable, N_STEPS, axis=0), rng)
        for k, (j, distribution) in enumerate(zip(columns, distributions)):
            unit = scale_numeric(distribution, trial[:, j])
            noise = rng.normal(0.0, step, size=len(unit))
            moved = _at_least_one_step(
                distribution, trial[:, j], unscale_numeric(distribution, unit + noise), noise
            )
            trial[:, j] = np.where(mask[:, k], moved, trial[:, j])
        scores = acquisition(np.where(np.repeat(active, N_STEPS, axis=0), trial, np.nan))
        scores = scores.reshape(n, N_STEPS)
        best = scores.argmax(axis=1)
        better = scores[np.arange(n), best] > current_score
        chosen = trial.reshape(n, N_STEPS, -1)[np.arange(n), best]
        current = np.where(better[:, None], chosen, current)
        current_score = np.where(better, scores[np.arange(n), best], current_score)
    return current


def polish(
    encoder: SearchSpaceEncoder,
    rows: np.ndarray,
    active: np.ndarray,
    acquisition: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """``rows`` with their active continuous numbers moved to a local maximum of a
    differentiable ``acquisition`` of the features (L-BFGS), the others left as they are.

    The climb's random steps end at a step of 0.025 of a parameter's range: a GP's acquisition
    is smooth, and Optuna's ``GPSampler`` ends on its gradient (L-BFGS-B), so the numbers are
    polished the same way. Bounds hold by a sigmoid of the scaled value; a row is only changed
    where its acquisition rose.

    Args:
        rows: ``[n, n_params]`` internal rows (a climb's result).
        active: ``[n, n_params]`` which parameters each row asks.
        acquisition: float64 features ``[n, n_features]`` -> ``[n]``, larger is better.
    """
    columns = continuous_columns(encoder)
    movable = active[:, columns]  # [n, 0] in a space without floats.
    if not movable.any():
        return rows
    features = torch.from_numpy(encoder.encode(np.where(active, rows, np.nan)).astype(np.float64))
    feature_columns = torch.from_numpy(encoder.offsets[columns] + 1)
    mask = torch.from_numpy(movable)
    start = features[:, feature_columns].clamp(_EDGE, 1 - _EDGE)
    logits = torch.logit(start).requires_grad_(True)

    def at(logits: torch.Tensor) -> torch.Tensor:
        moved = torch.where(mask, torch.sigmoid(logits), features[:, feature_columns])
        return features.index_copy(1, feature_columns, moved)

    with torch.no_grad():
        before = acquisition(features)
    optimiser = torch.optim.LBFGS(
        [logits], max_iter=N_POLISH_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = -acquisition(at(logits)).sum()
        value.backward()
        return value

    try:
        optimiser.step(loss)
    except RuntimeError:  # A numerical failure: keep the climb's rows.
        return rows
    with torch.no_grad():
        after_features = at(logits)
        better = (acquisition(after_features) > before).numpy()
    better &= np.isfinite(logits.detach().numpy()).all(axis=1)
    polished = rows.copy()
    scaled = after_features[:, feature_columns].detach().numpy()
    for k, j in enumerate(columns):
        values = unscale_numeric(encoder.distributions[j], scaled[:, k])
        polished[:, j] = np.where(better & movable[:, k], values, rows[:, j])
    return polished


def _moves(movable: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which numbers each step moves: all of them (half the steps) or one, drawn at random.

    Moving one at a time is a coordinate search: a weak parameter (an integer depth beside a
    width that matters more) still finds its best value, which joint steps, accepted for the
    width's gain, would keep shaking.
    """
    single = rng.random(len(movable)) < 0.5
    priority = np.where(movable, rng.random(movable.shape), np.inf)
    one = np.zeros_like(movable)
    rows = np.flatnonzero(movable.any(axis=1))
    one[rows, priority[rows].argmin(axis=1)] = True
    return np.where(single[:, None], one, movable)


def _at_least_one_step(
    distribution: FloatDistribution | IntDistribution,
    before: np.ndarray,
    moved: np.ndarray,
    direction: np.ndarray,
) -> np.ndarray:
    """A number on a grid (an int, a float with ``step``) that a small step rounded back to
    where it was moves one grid step the way the step went, within the bounds."""
    step = distribution.step
    if step is None or distribution.log and isinstance(distribution, FloatDistribution):
        return moved
    if distribution.log:  # An int on a log scale: its grid is still 1.
        step = 1
    nudged = np.clip(before + np.sign(direction) * step, distribution.low, distribution.high)
    return np.where(moved == before, nudged, moved)

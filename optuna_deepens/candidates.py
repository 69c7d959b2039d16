"""Candidate architectures for one acquisition step, in the encoder's internal matrix form.

Scoring is cheap and vectorised, so each trial scores thousands of candidates: uniform draws that
cover the space, plus 1-to-3-edit mutations of several of the best trials so far, which is where
a NAS optimum is usually found (local search is a strong NAS baseline for this reason).
Every candidate carries a value for *every* parameter of the union space, so that a branch the
objective opens is filled by the model's choice, and an activity mask for what the model sees:
exact when a ``search_space`` function can be replayed (:mod:`optuna_deepens.dry_run`), else
learnt from the trials (:mod:`optuna_deepens.activity`).

:class:`CandidateSources` holds the sources the sampler draws from; a new source is a method
there returning :class:`Candidates`, called from :mod:`optuna_deepens.proposal`.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from optuna.distributions import CategoricalDistribution

from optuna_deepens.activity import ActivityRules
from optuna_deepens.context import ProposalContext
from optuna_deepens.coordination import Pattern
from optuna_deepens.coordination import TakenArchitectures
from optuna_deepens.coordination import fully_suggested
from optuna_deepens.coordination import taken_architectures
from optuna_deepens.dry_run import SearchSpaceFunction
from optuna_deepens.dry_run import dry_run
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import scale_numeric
from optuna_deepens.encoding import unscale_numeric
from optuna_deepens.related import RelatedResults
from optuna_deepens.related import best_params
from optuna_deepens.related import trusted_best
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.trust_region import TrustRegion

_LOCAL_STEP_SCALE = 0.15  # Std of a numeric edit in the [0, 1] scaled space.
_N_INCUMBENTS = 8
_MUTATION_SHARE = 0.75
_STARTUP_DRAWS = 256
# Discrete spaces up to this size are enumerated once random candidates are all taken.
_MAX_GRID = 2**16


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


@dataclass(frozen=True)
class Candidates:
    """Full internal rows (every parameter valued: what the sampler returns) and activity."""

    values: np.ndarray  # [n, n_params]
    active: np.ndarray  # [n, n_params] bool: the parameters the model sees as asked.

    def __len__(self) -> int:
        return len(self.values)

    @property
    def rows(self) -> np.ndarray:
        """What the model sees: inactive entries ``NaN``."""
        return np.where(self.active, self.values, np.nan)

    @classmethod
    def from_rows(cls, internal: np.ndarray) -> Candidates:
        """Rows of evaluated trials (``NaN`` = not asked) as candidates."""
        return cls(internal, ~np.isnan(internal))

    def take(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.values[mask], self.active[mask])

    def __add__(self, other: Candidates) -> Candidates:
        return Candidates(
            np.concatenate([self.values, other.values]),
            np.concatenate([self.active, other.active]),
        )


class CandidateSources:
    """The candidates of one proposal: random draws, edits of the best trials, a grid.

    Args:
        n_candidates: Candidates scored per model-guided trial.
        search_space: The user's function making the objective's ``suggest_*`` calls; dry runs
            of it give exact activity. ``None``: activity is learnt from the trials.
        related: Finished studies of the space: their best architectures come first in the
            startup phase (``n_related_startup`` of them) and are mutated beside the study's.
        n_related_startup: Startup trials given to the related studies' best architectures.
    """

    def __init__(
        self,
        *,
        n_candidates: int,
        search_space: SearchSpaceFunction | None = None,
        related: tuple[RelatedResults, ...] = (),
        n_related_startup: int = 0,
    ) -> None:
        self._n_candidates = n_candidates
        self._search_space = search_space
        self._related = related
        self._n_related_startup = n_related_startup if related else 0

    def startup(self, ctx: ProposalContext) -> Candidates:
        """Uniform draws, before the model has anything to go on; with related studies, their
        ``n_related_startup`` best architectures first (each tried once: taken ones drop out)."""
        values = sample_uniform(ctx.encoder, _STARTUP_DRAWS, ctx.rng)
        if not self._n_related_startup:
            return self.with_activity(ctx, values, np.empty((0, 0)))
        best = self._related_best(ctx, self._n_related_startup)
        filled = np.where(np.isnan(best), values[: len(best)], best)  # Inactive: any value.
        return self.with_activity(ctx, np.concatenate([filled, values]), best)

    def around_incumbents(
        self,
        ctx: ProposalContext,
        data: TrainingData,
        head: str,
        *,
        related_weights: Mapping[str, float] | None = None,
    ) -> Candidates:
        """Uniform draws and mutations of the best architectures (:meth:`TrainingData.ranking`),
        and of the related studies' best, as many as each is trusted (``related_weights``)."""
        n_mutants = int(self._n_candidates * _MUTATION_SHARE)
        best_first = np.argsort(-data.ranking(head), kind="stable")
        parents = data.internal[best_first[:_N_INCUMBENTS]]
        trusted = trusted_best(self._related, related_weights or {}, _N_INCUMBENTS)
        if trusted:
            parents = np.concatenate([parents, ctx.encoder.to_internal(trusted)])
        mutants, parent_index = mutate(ctx.encoder, parents, n_mutants, ctx.rng)
        uniform = sample_uniform(ctx.encoder, self._n_candidates - n_mutants, ctx.rng)
        values = np.concatenate([mutants, uniform])
        return self.with_activity(ctx, values, parents[parent_index])

    def _related_best(self, ctx: ProposalContext, n: int) -> np.ndarray:
        """The related studies' ``n`` best architectures as internal rows (``NaN`` inactive)."""
        return ctx.encoder.to_internal(best_params(self._related, n))

    def trust_region(
        self, ctx: ProposalContext, data: TrainingData, region: TrustRegion
    ) -> tuple[Candidates, int] | None:
        """Edits of the incumbent within the trust radius, and the radius; ``None``: global.

        Also ``None`` when every architecture within the radius is taken: an exhausted region
        must not stall the search.
        """
        # The first rows of the data are the COMPLETE trials, in the order of ``trials``.
        observed = data.targets[OBJECTIVE][: len(data.observed)]
        radius = region.radius(observed)
        if radius == 0:
            return None
        incumbent = data.internal[[int(np.argmax(observed))]]
        values, _ = mutate(ctx.encoder, incumbent, self._n_candidates, ctx.rng, max_edits=radius)
        parents = np.repeat(incumbent, len(values), axis=0)
        candidates = self.with_activity(ctx, values, parents)
        if ctx.taken.contains(candidates.values).all():
            return None
        return candidates, radius

    @property
    def exact_activity(self) -> bool:
        """Whether candidates' activity comes from dry runs of ``search_space`` (else learnt)."""
        return self._search_space is not None

    def with_activity(
        self, ctx: ProposalContext, values: np.ndarray, parents: np.ndarray
    ) -> Candidates:
        """Candidates with their active parameters: exact by dry runs, else learnt.

        ``parents`` holds the parent of each of the first ``len(parents)`` rows (mutants);
        the remaining rows are uniform draws.
        """
        if self._search_space is None:
            parent_masks = ~np.isnan(parents)
            return Candidates(values, _learnt_activity(ctx, values, parent_masks))
        exact = ctx.encoder.to_internal(
            dry_run(self._search_space, ctx.encoder.to_params(row), ctx.rng, ctx.number).params
            for row in values
        )
        active = ~np.isnan(exact)
        return Candidates(np.where(active, exact, values), active)

    def free(
        self, ctx: ProposalContext, candidates: Candidates, *, enumerate_rest: bool = True
    ) -> Candidates:
        """The candidates no other trial holds, pinned values applied.

        When every one is taken and ``enumerate_rest``, a small discrete space is enumerated
        (up to ``_MAX_GRID`` points): near its end the few free architectures are easy to miss
        by random draws. With still nothing free, running trials' whole proposals are trusted
        (they may hold a conditional parameter they have not asked yet).
        """
        free = _deduplicated(ctx, candidates, ctx.taken)
        if len(free) or not enumerate_rest:
            return free
        values = grid(ctx.encoder, _MAX_GRID)
        if values is None:
            return free
        candidates = self.with_activity(ctx, values, np.empty((0, ctx.encoder.n_params)))
        free = _deduplicated(ctx, candidates, ctx.taken)
        if not len(free):
            whole = taken_architectures(
                ctx.encoder, ctx.trials, cache=ctx.cache, whole_proposals=True
            )
            free = _deduplicated(ctx, candidates, whole)
        return free


def _deduplicated(
    ctx: ProposalContext, candidates: Candidates, taken: TakenArchitectures
) -> Candidates:
    values, active, _ = deduplicate(
        ctx.encoder, _pin(candidates.values, ctx.pinned), candidates.active, taken
    )
    return Candidates(values, active)


def _learnt_activity(
    ctx: ProposalContext, values: np.ndarray, parent_masks: np.ndarray
) -> np.ndarray:
    """Activity of candidates when no search_space function can be replayed.

    The first ``len(parent_masks)`` rows keep their parent's branches, the others those of a
    random earlier trial, except where a switch learnt from the trials says otherwise.
    """
    encoder = ctx.encoder
    observed = encoder.to_internal(t.params for t in fully_suggested(ctx.trials))
    n_templates = len(values) - len(parent_masks)
    if len(observed) == 0:
        templates = np.ones((n_templates, encoder.n_params), dtype=bool)
    else:
        templates = ~np.isnan(observed)[ctx.rng.integers(len(observed), size=n_templates)]
    guess = np.concatenate([parent_masks.reshape(-1, encoder.n_params), templates])
    return ActivityRules(encoder, observed).apply(values, guess)


def _pin(values: np.ndarray, pinned: Pattern) -> np.ndarray:
    """``values`` with the pinned columns set (a copy when anything is pinned)."""
    if not pinned:
        return values
    values = values.copy()
    for column, value in pinned:
        values[:, column] = value
    return values

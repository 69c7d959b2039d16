"""One proposal, as a straight pipeline: data -> fit -> candidates -> score -> order -> claim.

Before the model has enough results (the startup phase) the pipeline is candidates -> claim:
random draws, in order. Afterwards:

1. **data**: every finished trial as encoded rows and named targets
   (:mod:`optuna_deepens.training_data`);
2. **fit**: the deep ensemble, warm-started (:mod:`optuna_deepens.fitting`);
3. **candidates**: edits of the best trials and uniform draws, or the trust region, or the short
   runs a full training may promote (:mod:`optuna_deepens.candidates`); minus every architecture
   another trial holds;
4. **score**: the acquisition of the level's head (:mod:`optuna_deepens.acquisition`, the head
   and the acquisition chosen by :class:`optuna_deepens.multi_fidelity.FidelityPolicy`);
5. **order**: by score, or for promotions by short-run result and predicted full result;
6. **claim**: the best candidate no other worker holds (:func:`optuna_deepens.coordination.claim`).

The result is the chosen row and user attrs explaining it in the objective's units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optuna_deepens import coordination
from optuna_deepens.acquisition import ACQUISITIONS
from optuna_deepens.acquisition import Scores
from optuna_deepens.acquisition import score
from optuna_deepens.candidates import Candidates
from optuna_deepens.candidates import CandidateSources
from optuna_deepens.context import ProposalContext
from optuna_deepens.coordination import HIGH
from optuna_deepens.fitting import EnsembleFitter
from optuna_deepens.multi_fidelity import FidelityPolicy
from optuna_deepens.multi_fidelity import promotion_order
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.training_data import build_training_data
from optuna_deepens.transforms import CopulaTransform
from optuna_deepens.transforms import direction_sign
from optuna_deepens.trust_region import TrustRegion

# PI and EI ask for an improvement of this many standard deviations of the observed values.
# Without it PI refines the incumbent's neighbourhood for ever (measured on a 6-edge, 5-op
# additive space: best after 60 trials 14.8-17.0 of 18 with no margin, 17.9-18.0 with 0.05).
_PI_MARGIN = 0.05


@dataclass(frozen=True)
class Proposal:
    """The row to return to Optuna (internal values) and the user attrs that explain it."""

    row: np.ndarray
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Shortlist:
    """Model-guided candidates, where they came from, and their short-run results if promoted."""

    candidates: Candidates
    source: str  # "model" or "promotion"
    low_values: dict[Any, float]  # Key of a promotable architecture -> its short-run result.
    trust_radius: int | None = None

    @property
    def attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {coordination.SOURCE_ATTR: self.source}
        if self.trust_radius is not None:
            attrs[coordination.TRUST_RADIUS_ATTR] = self.trust_radius
        return attrs


class Proposer:
    """Runs the pipeline for one trial; holds nothing but the parts and their options.

    Args:
        n_startup_trials: Results wanted before the model is used.
        sources: Where candidates come from.
        fitter: The ensemble and its fit cache.
        policy: The fidelity decisions (head, acquisition, promotions).
        trust_region: Optional local search around the incumbent (mono-fidelity only).
        warn: Called with a key and a message for a problem the user should hear about once.
    """

    def __init__(
        self,
        *,
        n_startup_trials: int,
        sources: CandidateSources,
        fitter: EnsembleFitter,
        policy: FidelityPolicy,
        trust_region: TrustRegion | None,
        warn: Callable[[str, str], None],
    ) -> None:
        self._n_startup_trials = n_startup_trials
        self._sources = sources
        self._fitter = fitter
        self._policy = policy
        self._trust_region = trust_region
        self._warn = warn

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """The claimed row, or ``None`` when every architecture is taken."""
        if self._policy.n_results(ctx.trials) < self._n_startup_trials:
            candidates = self._sources.free(ctx, self._sources.startup(ctx))
            if not len(candidates):
                return None
            choice = self._claim(ctx, candidates, np.arange(len(candidates)))
            return Proposal(candidates.values[choice], {coordination.SOURCE_ATTR: "startup"})
        return self._guided(ctx)

    def _guided(self, ctx: ProposalContext) -> Proposal | None:
        data = self._data(ctx)
        ensemble = self._fitter.fit(ctx.encoder, data)
        head = self._policy.head(ctx.level, data)
        shortlist = self._shortlist(ctx, data, head)
        promotion = shortlist.source == "promotion"
        # Promotions come from short runs only: no grid of untried architectures.
        candidates = self._sources.free(ctx, shortlist.candidates, enumerate_rest=not promotion)
        if not len(candidates):
            return None
        predictions = ensemble.predict(
            ctx.encoder.encode(candidates.rows),
            head,
            condition=0.0 if head == LOW_FIDELITY else None,
        )
        margin = _PI_MARGIN * float(np.nanstd(data.targets[head]))
        best = data.best(head)
        assert best is not None
        acquisition = self._policy.acquisition(head)
        scores = score(acquisition, predictions, best, ctx.rng, margin=margin)
        order = scores.order
        if promotion:
            keys = ctx.encoder.keys(candidates.rows)
            low_values = np.array([shortlist.low_values[k] for k in keys])
            order = promotion_order(low_values, scores.mean if head == OBJECTIVE else None)
        choice = self._claim(ctx, candidates, order)
        attrs = {
            **shortlist.attrs,
            **_explain(ctx, data.transforms[head], scores, choice, acquisition),
        }
        return Proposal(candidates.values[choice], attrs)

    def _data(self, ctx: ProposalContext) -> TrainingData:
        data = build_training_data(
            ctx.trials, ctx.encoder, ctx.study.direction, low_step=self._policy.low_step
        )
        if data.n_clipped:
            self._warn(
                "inf",
                f"{data.n_clipped} trial(s) returned an infinite value; the model clips it to "
                "the finite range. Return a finite penalty instead to rank failures.",
            )
        return data

    def _shortlist(self, ctx: ProposalContext, data: TrainingData, head: str) -> _Shortlist:
        """The candidates to score: the trust region, or edits and draws, or promotions."""
        region = None
        if self._trust_region is not None and self._policy.config is None and head == OBJECTIVE:
            region = self._sources.trust_region(ctx, data, self._trust_region)
        if region is not None:
            return _Shortlist(region[0], "model", {}, trust_radius=region[1])
        candidates = self._sources.around_incumbents(ctx, data, head)
        if ctx.level != HIGH:
            return _Shortlist(candidates, "model", {})
        internal, results = self._policy.promotable(ctx.encoder, ctx.study.direction, ctx.trials)
        fresh = ~ctx.taken.contains(internal)
        promotable = Candidates.observed(internal[fresh])
        low_values = dict(zip(ctx.encoder.keys(internal[fresh]), results[fresh]))
        if len(promotable) and self._policy.promotes_only():
            return _Shortlist(promotable, "promotion", low_values)
        return _Shortlist(candidates + promotable, "model", low_values)

    def _claim(self, ctx: ProposalContext, candidates: Candidates, order: np.ndarray) -> int:
        return coordination.claim(
            ctx.study,
            ctx.trial,
            ctx.encoder,
            candidates.values,
            candidates.active,
            order,
            ctx.rng,
            cache=ctx.cache,
            reuse_pruned=ctx.reuse_pruned,
        )


def _explain(
    ctx: ProposalContext,
    transform: CopulaTransform,
    scores: Scores,
    choice: int,
    acquisition: str,
) -> dict[str, Any]:
    """The prediction behind a choice, in the objective's own units, for the dashboard.

    For a low-fidelity trial it is the prediction of the low-fidelity value.
    """
    mean, std = float(scores.mean[choice]), float(scores.std[choice])
    low, centre, high = transform.inverse(np.array([mean - std, mean, mean + std]))
    return {
        coordination.PREDICTED_MEAN_ATTR: direction_sign(ctx.study.direction) * float(centre),
        coordination.PREDICTED_STD_ATTR: float(high - low) / 2,
        coordination.ACQUISITION_ATTR: ACQUISITIONS[acquisition].display(
            float(scores.value[choice])
        ),
        coordination.ACQUISITION_FUNCTION_ATTR: acquisition,
    }

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
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optuna_deepens import coordination
from optuna_deepens._torch import torch_threads
from optuna_deepens.acquisition import ACQUISITIONS
from optuna_deepens.acquisition import Front
from optuna_deepens.acquisition import Scores
from optuna_deepens.acquisition import score
from optuna_deepens.candidates import Candidates
from optuna_deepens.candidates import CandidateSources
from optuna_deepens.constraints import Constraints
from optuna_deepens.constraints import Predicted
from optuna_deepens.context import ProposalContext
from optuna_deepens.coordination import HIGH
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.fitting import EnsembleFitter
from optuna_deepens.kernel import KernelAtFidelity
from optuna_deepens.kernel import KernelParams
from optuna_deepens.kernel import KernelSurrogate
from optuna_deepens.local_search import N_STARTS
from optuna_deepens.local_search import climb
from optuna_deepens.local_search import numeric_columns
from optuna_deepens.local_search import polish
from optuna_deepens.multi_fidelity import FidelityPolicy
from optuna_deepens.multi_fidelity import promotion_order
from optuna_deepens.multi_objective import non_dominated
from optuna_deepens.multi_objective import reference_point
from optuna_deepens.novelty import NEW_STRUCTURE_ATTR
from optuna_deepens.novelty import borrow_numbers
from optuna_deepens.novelty import branch_floor
from optuna_deepens.novelty import first_of_each
from optuna_deepens.novelty import prefer_untried
from optuna_deepens.novelty import structures
from optuna_deepens.novelty import tried
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.training_data import build_training_data
from optuna_deepens.training_data import fidelity_rows
from optuna_deepens.transforms import metric_target
from optuna_deepens.trust_region import TrustRegion

# Features -> predictions ``[members, n]``: the ensemble's members or a GP's posterior draws.
Predictor = Callable[[np.ndarray], np.ndarray]

# PI and EI ask for an improvement of this many standard deviations of the observed values.
# Without it PI refines the incumbent's neighbourhood for ever (measured on a 6-edge, 5-op
# additive space: best after 60 trials 14.8-17.0 of 18 with no margin, 17.9-18.0 with 0.05).
_PI_MARGIN = 0.05
# "auto": the kernel wherever there are numbers or short runs, unless the ensemble knows more
# than the results (see ``Proposer._uses_kernel`` and the sampler's ``_numeric_surrogate``).
NUMERIC_SURROGATES = ("auto", "kernel", "ensemble")


@dataclass(frozen=True)
class Proposal:
    """The row to return to Optuna (internal values) and the user attrs that explain it."""

    row: np.ndarray
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Scored:
    """Candidates after the metric bounds, with their acquisition."""

    candidates: Candidates
    scores: Scores
    excess: np.ndarray | None  # Predicted excess over metric bounds, for ``verify``.
    acquisition: str


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
        constraints: Declared metric bounds and reported constraints.
        front_acquisition: The acquisition of a multi-objective study.
        kernel_acquisition: The acquisition where the kernel scores the objective.
        numeric_surrogate: What scores candidates of a single-objective study: ``"kernel"``
            (a GP's posterior draws), ``"ensemble"`` (its members) or ``"auto"`` (the kernel
            where there are numbers or short runs; see ``_uses_kernel``).
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
        constraints: Constraints,
        front_acquisition: str = "ei",
        kernel_acquisition: str = "ei",
        numeric_surrogate: str = "auto",
        objective_scale: str = "copula",
        warn: Callable[[str, str], None],
    ) -> None:
        self._n_startup_trials = n_startup_trials
        self._sources = sources
        self._fitter = fitter
        self._policy = policy
        self._trust_region = trust_region
        self._constraints = constraints
        self._front_acquisition = front_acquisition
        self._kernel_acquisition = kernel_acquisition
        self._numeric_surrogate = numeric_surrogate
        self._objective_scale = objective_scale
        self._kernel_params: KernelParams | None = None  # The last fit's: the next one's start.
        # The kernel that scored the last proposal (read at its head's fidelity) and the same
        # kernel read as the objective (with its encoder, for inspection); None: the ensemble.
        self._last_kernel: KernelSurrogate | KernelAtFidelity | None = None
        self._objective_kernel: (
            tuple[SearchSpaceEncoder, KernelSurrogate | KernelAtFidelity] | None
        ) = None
        self._warn = warn

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """The claimed row, or ``None`` when every architecture is taken."""
        if self._policy.n_results(ctx.trials) < self._n_startup_trials:
            candidates = self._sources.free(ctx, self._sources.startup(ctx))
            if not len(candidates):
                return None
            order, measured = self._constraints.verify(ctx, candidates, np.arange(len(candidates)))
            choice = self._claim(ctx, candidates, order)
            attrs = {coordination.SOURCE_ATTR: "startup", **measured.get(choice, {})}
            return Proposal(candidates.values[choice], attrs)
        return self._guided(ctx)

    def _guided(self, ctx: ProposalContext) -> Proposal | None:
        data = self._data(ctx)
        head = self._policy.head(ctx.level, data)
        kernel_only = self._kernel_only(ctx, data, head)
        ensemble = None if kernel_only else self._fitter.fit(ctx.encoder, data)
        shortlist = self._shortlist(ctx, data, head)
        promotion = shortlist.source == "promotion"
        # Promotions come from short runs only: no grid of untried architectures.
        candidates = self._sources.free(ctx, shortlist.candidates, enumerate_rest=not promotion)
        if not len(candidates):
            return None
        n_numeric = len(numeric_columns(ctx.encoder))
        mixed = not promotion and not ctx.objectives.is_multi and n_numeric > 0
        # Set again by _kernel if the kernel scores.
        self._last_kernel = self._objective_kernel = None
        if not ctx.objectives.is_multi and self._uses_kernel(ctx, head):
            predictor = self._kernel(ctx, data, head)  # Promotions included.
        else:
            assert ensemble is not None  # Only the kernel's proposals skip the fit.
            predictor = _members(ensemble, head)
        is_tried = None
        if not mixed:  # All-categorical spaces, fronts and promotions: as they always were.
            scored = self._score(ctx, data, ensemble, head, candidates, ctx.rng, predictor)
            order = scored.scores.order
        else:
            scored, is_tried = self._score_with_numbers(
                ctx, data, ensemble, head, candidates, predictor
            )
            rows = scored.candidates.rows

            def members(indices: np.ndarray) -> np.ndarray:
                return predictor(ctx.encoder.encode(rows[indices]))

            patterns = [mask.tobytes() for mask in scored.candidates.active]
            order = branch_floor(
                scored.scores.order,
                patterns,
                _finished_patterns(ctx),
                exact=self._sources.exact_activity,
            )
            order = prefer_untried(order, is_tried, members)
        candidates, scores = scored.candidates, scored.scores
        if promotion:
            keys = ctx.encoder.keys(candidates.rows)
            low_values = np.array([shortlist.low_values[k] for k in keys])
            order = promotion_order(low_values, scores.mean if head == OBJECTIVE else None)
        order, measured = self._constraints.verify(ctx, candidates, order, scored.excess)
        choice = self._claim(ctx, candidates, order)
        explanation = _explain(ctx, data, head, scores, choice, scored.acquisition)
        attrs = {**shortlist.attrs, **explanation, **measured.get(choice, {})}
        if is_tried is not None and n_numeric < ctx.encoder.n_params:
            # How the trials were spent: new structures, or numbers for known ones.
            attrs[NEW_STRUCTURE_ATTR] = not is_tried[choice]
        return Proposal(candidates.values[choice], attrs)

    def _score(
        self,
        ctx: ProposalContext,
        data: TrainingData,
        ensemble: DeepEnsemble | None,
        head: str,
        candidates: Candidates,
        rng: np.random.Generator,
        predictor: Predictor,
    ) -> _Scored:
        """The plausible candidates (within metric bounds) and their acquisition."""
        features = ctx.encoder.encode(candidates.rows)
        predicted = (
            self._constraints.predict(ctx, data, ensemble, features)
            if ensemble is not None
            else Predicted(None, None)  # No constraints, no bounds: see _kernel_only.
        )
        # Candidates predicted over a metric bound are not proposed (unless all are).
        candidates, features, predicted = self._constraints.plausible(
            candidates, features, predicted
        )
        constraints = predicted.values
        if ctx.objectives.is_multi:
            acquisition = self._front_acquisition
            members = _objective_predictions(ctx, ensemble, features)
            scores = score(acquisition, members, _front(data), rng, constraints=constraints)
        else:
            kernel = self._last_kernel is not None
            acquisition = self._kernel_acquisition if kernel else self._policy.acquisition(head)
            moments = self._moments(acquisition, features)
            scores = score(
                acquisition,
                _members_or_mean(predictor, features, moments),
                _best(data, head),
                rng,
                margin=_margin(data, head),
                constraints=constraints,
                moments=moments,
            )
        return _Scored(candidates, scores, predicted.excess, acquisition)

    def _score_with_numbers(
        self,
        ctx: ProposalContext,
        data: TrainingData,
        ensemble: DeepEnsemble | None,
        head: str,
        candidates: Candidates,
        predictor: Predictor,
    ) -> tuple[_Scored, np.ndarray]:
        """Candidates plus the best ones with their numbers climbed, the untried structures
        with their branch's best numbers (:func:`optuna_deepens.novelty.borrow_numbers`),
        scored by one Thompson member throughout; and whether each one's structure was tried."""
        seed = int(ctx.rng.integers(2**63))
        scored = self._score(
            ctx, data, ensemble, head, candidates, np.random.default_rng(seed), predictor
        )
        pool = candidates + self._climbed(ctx, data, predictor, scored, seed, head)
        new = ~tried(ctx.encoder, pool.values, ctx.trials)
        values = pool.values.copy()
        values[new] = borrow_numbers(ctx.encoder, values[new], pool.active[new], data)
        pool = Candidates(values, pool.active)
        scored = self._score(
            ctx, data, ensemble, head, pool, np.random.default_rng(seed), predictor
        )
        return scored, tried(ctx.encoder, scored.candidates.values, ctx.trials)

    def _climbed(
        self,
        ctx: ProposalContext,
        data: TrainingData,
        predictor: Predictor,
        scored: _Scored,
        seed: int,
        head: str,
    ) -> Candidates:
        """The best candidates with their numbers moved up the acquisition (same member)."""
        acquisition = scored.acquisition
        best, margin = _best(data, head), _margin(data, head)

        def value(rows: np.ndarray) -> np.ndarray:
            features = ctx.encoder.encode(rows)
            rng = np.random.default_rng(seed)
            moments = self._moments(acquisition, features)
            members = _members_or_mean(predictor, features, moments)
            return score(acquisition, members, best, rng, margin=margin, moments=moments).value

        # The best candidate of each of the best structures: an untried structure's numbers are
        # random draws, and it must be compared at its best too.
        starts = first_of_each(
            scored.scores.order, structures(ctx.encoder, scored.candidates.rows), N_STARTS
        )
        active = scored.candidates.active[starts]
        values = climb(ctx.encoder, scored.candidates.values[starts], active, value, ctx.rng)
        values = self._polished(ctx, values, active, acquisition, best, margin)
        # A number may open or close a branch (a depth that adds layers): the activity is
        # recomputed, exactly when search_space= is given.
        parents = scored.candidates.rows[starts]
        climbed = self._sources.with_activity(ctx, values, parents)
        return self._sources.free(ctx, climbed, enumerate_rest=False)

    def _polished(
        self,
        ctx: ProposalContext,
        values: np.ndarray,
        active: np.ndarray,
        acquisition: str,
        best: float,
        margin: float,
    ) -> np.ndarray:
        """The climbed rows' continuous numbers on the gradient of the kernel's acquisition
        (:func:`optuna_deepens.local_search.polish`): where the kernel scores with its exact
        moments (PI, EI, UCB), not its draws or the ensemble's members. Constraints are left
        to the scoring that follows: the polished rows are candidates like the others."""
        kernel = self._last_kernel
        if kernel is None or not _reads_moments(acquisition):
            return values
        function = ACQUISITIONS[acquisition]

        def value(features: torch.Tensor) -> torch.Tensor:
            mean, std = kernel.moments_tensor(features)
            return function.tensor_value(mean, std, best, margin)

        with torch_threads(self._fitter.config.n_threads):
            return polish(ctx.encoder, values, active, value)

    def _moments(
        self, acquisition: str, features: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The kernel's exact mean and spread for the acquisitions that read them (not its
        draws' sample mean): ``None`` when the ensemble scores, or for Thompson sampling."""
        if self._last_kernel is None or not _reads_moments(acquisition):
            return None
        return self._last_kernel.moments(features)

    def _kernel_only(self, ctx: ProposalContext, data: TrainingData, head: str) -> bool:
        """Whether the kernel alone scores this proposal, so that no ensemble is fitted: where
        it scores a single-objective study with neither constraints nor bounds (the ensemble's
        heads for them are the only use it would have). With short runs the kernel scores
        every level and the promotions too (``_kernel``)."""
        return (
            self._uses_kernel(ctx, head)
            and not ctx.objectives.is_multi
            and not data.constraint_heads
            and not ctx.objectives.bounds
        )

    def _uses_kernel(self, ctx: ProposalContext, head: str) -> bool:
        """Whether the kernel scores ``head`` here (the objective, or with ``multi_fidelity``
        the short runs too). ``"kernel"``: everywhere, spaces of choices alone included (one-hot
        columns). ``"auto"`` takes it wherever there are numbers: on LCBench it left half the
        ensemble's regret, and with log EI it is at least level with the ensemble where
        categorical choices are searched too (tests/synthetic.py: median regret at 60 trials
        0.97 against 1.17, 20 seeds; the branched space of tests/test_sampler.py: optimum after
        a median of 20 trials against 24.5; ``results/mixed/kernel_ei_on_test_spaces.md``).
        And wherever there are short runs, numbers or not: on NAS-Bench-201 (20 seeds) it found
        the optimum in 11.7 / 10.4 / 28.5 equivalent evaluations against the ensemble's 28.4 /
        19.5 / 38.4, and on LCBench (17 tasks x 2 seeds) left 0.57 pp regret against 0.94."""
        if head not in (OBJECTIVE, LOW_FIDELITY) or self._numeric_surrogate == "ensemble":
            return False
        if self._numeric_surrogate == "kernel":
            return True
        return self._policy.config is not None or len(numeric_columns(ctx.encoder)) > 0

    def _kernel(self, ctx: ProposalContext, data: TrainingData, head: str) -> Predictor:
        """Posterior draws of ``head`` from the GP (:mod:`optuna_deepens.kernel`), as many as
        the ensemble has members, warm-started from the previous fit's parameters. With short
        runs one GP learns both fidelities, the fidelity an input (``fidelity_rows``), and is
        read at the head's: the low step for short runs, the full step for the objective."""
        config, fidelities = self._fitter.config, self._policy.config
        if fidelities is None:
            features, targets = data.features, data.targets[OBJECTIVE]
        else:
            full = fidelities.condition(fidelities.full_step)
            features, targets = fidelity_rows(data, full)
        model = KernelSurrogate(
            features,
            targets,
            n_draws=config.n_members,
            seed=int(ctx.rng.integers(2**31)),
            start=self._kernel_params,
            n_threads=config.n_threads,
        )
        self._kernel_params = model.params
        if fidelities is None:
            scorer: KernelSurrogate | KernelAtFidelity = model
            objective: KernelSurrogate | KernelAtFidelity = model
        else:
            objective = KernelAtFidelity(model, full)
            low = fidelities.condition(fidelities.low_step)  # 0, as in fidelity_rows.
            scorer = objective if head == OBJECTIVE else KernelAtFidelity(model, low)
        self._last_kernel = scorer
        self._objective_kernel = (ctx.encoder, objective)
        return scorer.predict

    def predict_objective(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        """The objective as the last proposal's model predicts it, ``[members, n]`` on the
        model's scale: the kernel's draws if it scored, else the ensemble's last fit."""
        if self._objective_kernel is None:
            return self._fitter.predict(params, OBJECTIVE)
        encoder, model = self._objective_kernel
        return model.predict(encoder.encode(encoder.to_internal(params)))

    def _data(self, ctx: ProposalContext) -> TrainingData:
        data = build_training_data(
            ctx.trials,
            ctx.encoder,
            ctx.objectives,
            low_step=self._policy.low_step,
            scale=self._objective_scale,
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
        mono = self._policy.config is None and not ctx.objectives.is_multi
        if self._trust_region is not None and mono and head == OBJECTIVE:
            region = self._sources.trust_region(ctx, data, self._trust_region)
        if region is not None:
            return _Shortlist(region[0], "model", {}, trust_radius=region[1])
        candidates = self._sources.around_incumbents(
            ctx, data, head, related_weights=self._fitter.related_weights
        )
        if ctx.level != HIGH:
            return _Shortlist(candidates, "model", {})
        internal, results = self._policy.promotable(ctx.encoder, ctx.study.direction, ctx.trials)
        fresh = ~ctx.taken.contains(internal)
        promotable = Candidates.from_rows(internal[fresh])
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


def _finished_patterns(ctx: ProposalContext) -> list[bytes]:
    """The asked parameters of each finished trial (:func:`novelty.branch_floor`'s keys)."""
    finished = [t.params for t in ctx.trials if t.state.is_finished() and t.params]
    if not finished:
        return []
    return [mask.tobytes() for mask in ~np.isnan(ctx.encoder.to_internal(finished))]


def _reads_moments(acquisition: str) -> bool:
    """Whether an acquisition reads a model's mean and spread (PI, EI, UCB: what the kernel
    gives exactly, and differentiably) rather than one member's draw (Thompson sampling)."""
    return acquisition != "ts"


def _predict(ensemble: DeepEnsemble, features: np.ndarray, head: str) -> np.ndarray:
    """The members' predictions of ``head``; the low-fidelity head at the low step itself."""
    return ensemble.predict(features, head, condition=0.0 if head == LOW_FIDELITY else None)


def _members_or_mean(
    predictor: Predictor, features: np.ndarray, moments: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """The members' predictions, or only the exact mean where the acquisition reads moments:
    the kernel's draws were most of a proposal's time, and PI, EI and UCB do not read them."""
    return predictor(features) if moments is None else moments[0][None]


def _members(ensemble: DeepEnsemble, head: str) -> Predictor:
    return lambda features: _predict(ensemble, features, head)


def _best(data: TrainingData, head: str) -> float:
    best = data.best(head)
    assert best is not None  # The model is only used once there are results.
    return best


def _margin(data: TrainingData, head: str) -> float:
    return _PI_MARGIN * float(np.nanstd(data.targets[head]))


def _explain(
    ctx: ProposalContext,
    data: TrainingData,
    head: str,
    scores: Scores,
    choice: int,
    acquisition: str,
) -> dict[str, Any]:
    """The prediction behind a choice, in the objective's own units, for the dashboard.

    For a low-fidelity trial it is the prediction of the low-fidelity value. With several
    objectives, ``deepens_predicted_mean`` is the first and ``deepens_predicted_mean_<i>`` the
    others; the acquisition is the hypervolume the choice is expected to add.
    """
    attrs: dict[str, Any] = {}
    objectives = ctx.objectives
    heads = objectives.heads if objectives.is_multi else (head,)
    means = np.atleast_2d(scores.mean.T).T[choice]  # [k]
    stds = np.atleast_2d(scores.std.T).T[choice]
    for i, (name, sign) in enumerate(zip(heads, objectives.signs)):
        interval = np.array([means[i] - stds[i], means[i], means[i] + stds[i]])
        if name in data.transforms:
            low, centre, high = sign * data.transforms[name].inverse(interval)
        else:  # A zero-cost metric on the log scale, signed like its objective.
            low, centre, high = metric_target.inverse(sign * interval)
        suffix = "" if i == 0 else f"_{i}"
        attrs[coordination.PREDICTED_MEAN_ATTR + suffix] = float(centre)
        attrs[coordination.PREDICTED_STD_ATTR + suffix] = abs(float(high - low)) / 2
    value = float(scores.value[choice])
    attrs[coordination.ACQUISITION_ATTR] = (
        ACQUISITIONS[acquisition].display(value) if np.isfinite(value) else None
    )
    attrs[coordination.ACQUISITION_FUNCTION_ATTR] = acquisition
    return attrs


def _objective_predictions(
    ctx: ProposalContext, ensemble: DeepEnsemble, features: np.ndarray
) -> np.ndarray:
    """Each member's prediction of every objective on the model's scale, ``[members, n, k]``."""
    objectives = ctx.objectives
    columns = []
    for i, (head, sign) in enumerate(zip(objectives.heads, objectives.signs)):
        prediction = ensemble.predict(features, head)
        columns.append(sign * prediction if i in objectives.metrics else prediction)
    return np.stack(columns, axis=2)


def _front(data: TrainingData) -> Front:
    """The feasible non-dominated results, and a reference point below every result."""
    observed = data.observed
    feasible = observed[data.feasible] if len(data.feasible) else observed
    front = feasible[non_dominated(feasible)]
    return Front(points=front, reference=reference_point(observed))

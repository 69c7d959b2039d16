"""``DeepEnsembleSampler``: Bayesian optimisation for NAS with a deep-ensemble surrogate.

The sampler holds the options and answers Optuna's hooks; the work of a proposal is done by
:class:`optuna_deepens.proposal.Proposer` (see ``docs/architecture.md`` for the data flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
import threading
from typing import Any
import warnings
import zlib

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens import coordination
from optuna_deepens._validation import check_choice
from optuna_deepens._validation import check_int
from optuna_deepens._validation import check_metric_bounds
from optuna_deepens._validation import check_objective_metrics
from optuna_deepens._validation import check_objectives
from optuna_deepens._validation import check_options
from optuna_deepens._validation import check_seed
from optuna_deepens.candidates import CandidateSources
from optuna_deepens.constraints import Constraints
from optuna_deepens.constraints import MeasureFunction
from optuna_deepens.context import ProposalContext
from optuna_deepens.context import derive_seed
from optuna_deepens.coordination import PatternCache
from optuna_deepens.coordination import fully_suggested
from optuna_deepens.dry_run import SearchSpaceFunction
from optuna_deepens.dry_run import differences
from optuna_deepens.dry_run import explore
from optuna_deepens.encoding import modelled_space
from optuna_deepens.encoding import union_search_space
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.fitting import EnsembleFitter
from optuna_deepens.fitting import ensemble_config as resolve_ensemble_config
from optuna_deepens.multi_fidelity import FidelityPolicy
from optuna_deepens.multi_fidelity import MultiFidelity
from optuna_deepens.proposal import NUMERIC_SURROGATES
from optuna_deepens.proposal import Proposer
from optuna_deepens.related import RelatedStudy
from optuna_deepens.related import check_related_space
from optuna_deepens.related import load_related
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.training_data import Objectives
from optuna_deepens.transforms import OBJECTIVE_SCALES
from optuna_deepens.trust_region import TrustRegion

# Thompson sampling for one objective; the members' expected hypervolume improvement for
# several. On the 5-stage width/latency problem of tests/test_multi_objective.py (20 seeds, 40
# trials) EHVI held 0.920-0.976 of the true front's hypervolume, Thompson sampling 0.863-0.972;
# on NAS-Bench-201 CIFAR-10 (20 seeds) they were within noise: 0.867 / 0.857 at 25 evaluations,
# 0.952 / 0.959 at 100, 0.964 / 0.970 at 150 (benchmarks/results/nb201_multiobjective).
_ACQUISITION = "ts"
_FRONT_ACQUISITION = "ei"
_KERNEL_ACQUISITION = "ei"
# Results the copula needs before the model can be fitted, whatever n_startup_trials says.
_MIN_RESULTS = 2
# With related studies, this share of the startup trials tries their best architectures; the
# rest stay uniform draws, so that the model also sees where the related studies were wrong.
_RELATED_STARTUP_SHARE = 0.5


def _numeric_surrogate(
    option: str, pretrained: PretrainedSurrogate | None, related: Sequence[Any]
) -> str:
    """``"auto"`` resolved as far as the options go (the space and the fidelities decide the
    rest): the kernel cannot read zero-cost metrics or related studies, which the ensemble's
    shared trunk learns from."""
    if option != "auto":
        return option
    knows_more = pretrained is not None or bool(related)
    return "ensemble" if knows_more else option


def _unused_options(
    surrogate: str,
    pretrained: PretrainedSurrogate | None,
    related: Sequence[Any],
    multi_fidelity: MultiFidelity | None,
) -> list[str]:
    """Options the kernel would silently ignore: said at construction, not discovered later."""
    messages = []
    if surrogate == "kernel" and (pretrained is not None or related):
        messages.append(
            'numeric_surrogate="kernel" scores with a Gaussian process, which cannot learn from '
            'pretrained or related_studies: they are unused. Leave numeric_surrogate="auto" '
            "to learn from them."
        )
    if surrogate != "ensemble" and multi_fidelity is not None:
        default = MultiFidelity(low_step=1, full_step=2)
        changed = [
            f"{name}={getattr(multi_fidelity, name)!r}"
            for name in ("low_fidelity_acquisition", "high_fidelity_weight")
            if getattr(multi_fidelity, name) != getattr(default, name)
        ]
        if changed:
            messages.append(
                f"MultiFidelity({', '.join(changed)}) tunes the ensemble's short-run head, but "
                "with short runs one Gaussian process scores both fidelities (log EI) unless "
                'numeric_surrogate="ensemble", which uses them.'
            )
    return messages


class DeepEnsembleSampler(BaseSampler):
    """Bayesian optimisation whose surrogate is a deep ensemble (thesis chapter 5).

    Each trial after the startup phase:

    1. encodes every COMPLETE trial over the *union* of all parameters seen (conditional ones
       included, marked inactive where a trial did not use them);
    2. fits the ensemble, warm-started from the previous fit when the data only grew;
    3. scores thousands of candidates (uniform draws and 1-3-edit mutations of the best trials,
       or dry runs of ``search_space`` for exact conditional structure), excluding every
       architecture already finished, running elsewhere or proposed by another worker (with
       ``trust_region``, edits of the best trial within the region while it lasts);
    4. returns the best candidate by the acquisition, and stores the predicted mean, spread and
       acquisition value as ``deepens_*`` user attrs, visible in optuna-dashboard.

    A multi-objective study (``directions=[...]``) is searched by the hypervolume each
    candidate would add to the observed front, every member a posterior draw. Constraints the
    objective reports with ``trial.set_constraint`` are learnt as heads (feasible at ``<= 0``);
    bounds on zero-cost metrics (``metric_bounds``) are read from the metric heads, or
    measured exactly with ``measure_metrics``.

    All state is derived from storage, so a study re-opened in another process resumes; the
    startup draws are seeded by ``(seed, trial.number)`` and are never replayed.

    Args:
        seed: Seed for every random choice. ``None`` draws one.
        n_startup_trials: COMPLETE trials sampled at random before the ensemble is used; 0 and
            1 mean as soon as two results exist.
        n_members: Networks in the ensemble; their spread is the uncertainty. Defaults to
            ``ensemble_config.n_members`` (6); giving both with different values is an error.
        acquisition: ``"ts"`` (Thompson sampling: the best candidate of one member drawn at
            random), ``"pi"`` (probability of improvement, the thesis's choice), ``"ei"`` or
            ``"ucb"``; with several objectives each scores hypervolume improvement (``"ei"``:
            its mean over the members). ``None``: ``"ts"`` for one objective (it needed
            0.65-0.94x the evaluations of PI on NAS-Bench-201, see
            :mod:`optuna_deepens.acquisition`), ``"ei"`` for several, and ``"ei"`` where the
            kernel scores (see ``numeric_surrogate``), from its exact posterior mean and
            spread (on LCBench it left less regret than Thompson sampling on the same kernel).
        n_candidates: Candidates scored per trial.
        search_space: Optional function making the same ``suggest_*`` calls as the objective
            without training. Dry runs of it give candidates whose active parameters are exact.
        ensemble_config: Network shape and training schedule.
        pretrained: An ensemble pretrained on zero-cost metrics of this search space
            (:func:`optuna_deepens.pretrain`, or :meth:`PretrainedSurrogate.load`). Every cold
            fit starts from its weights, and the sampler adopts its network shape.
        replay_pretraining: Keep training the metric heads on the pretraining table during
            the search (one extra mini-batch per step), so the shared embedding stays general.
        multi_fidelity: Mix short trainings (the value reported at ``low_step``) with full
            ones; see :class:`optuna_deepens.MultiFidelity`, :func:`optuna_deepens.fidelity`
            and :class:`optuna_deepens.LowFidelityPruner`.
        trust_region: Search next to the best trial first, with a radius in edits that shrinks
            while it does not improve (:class:`optuna_deepens.TrustRegion`). Off by default: on
            NAS-Bench-201 (20 seeds, with PI) it helped on ImageNet16-120 without pretraining
            but cost evaluations on CIFAR-10 and CIFAR-100. Used in mono-fidelity,
            single-objective studies only.
        objective_metrics: Objective index -> the zero-cost metric it returns, e.g.
            ``{1: "latency_ms"}`` for ``return accuracy, latency``: that objective is read from
            the metric's head (pretrained, exact for measured trials) instead of being learnt
            again as a noisy target.
        metric_bounds: Zero-cost metric -> largest feasible value, e.g.
            ``{"latency_ms": 5.0}``: candidates predicted over a bound are not proposed.
        measure_metrics: A function from an architecture's params to its exact zero-cost
            metrics (build the model and call :func:`optuna_deepens.zero_cost.measure`). With
            ``metric_bounds``, the best candidates are measured before one is proposed, so no
            architecture over a bound is trained; the metrics are recorded as ``zc_*`` attrs.
        related_studies: Finished single-objective studies of the same search space
            (``optuna.Study`` objects, or ``(storage, study_name)`` pairs), read once here.
            Each becomes a head of the shared trunk on its own rank scale, so this study
            starts from what they learnt; their best architectures fill half of the startup
            trials and are mutated beside this study's best. A study of another space raises
            :class:`optuna_deepens.SearchSpaceMismatchError`.
        numeric_surrogate: What scores the candidates of a single-objective study:
            ``"kernel"``, posterior draws of a Gaussian process
            on the encoded parameters (:mod:`optuna_deepens.kernel`), or ``"ensemble"``, the
            members. ``"auto"``: the kernel wherever there are numbers (on LCBench it left half
            the ensemble's regret; with categorical choices beside them it is at least level:
            see ``Proposer._uses_kernel``) or short runs (``multi_fidelity``: one GP over both
            fidelities, the fidelity an input column, scores every level and no ensemble is
            trained), the ensemble where it knows more than the study's results
            (``pretrained``, ``related_studies``). A space of choices alone studied at one
            fidelity keeps the ensemble unless ``"kernel"`` is asked for (it was better on 9 of
            the 12 NAS-Bench-201 and NAS-Bench-Graph datasets); multi-objective studies always
            use it. The kernel learns the objective (and short runs) alone: recorded zero-cost
            metrics (``zc_*`` attrs) still feed metric bounds and constraints through the
            ensemble's heads, but not the objective's model (the pretrained ensemble, which
            learns from them, was no better on NAS-Bench-201's short runs: 10.7 / 14.6 / 30.3
            against 11.7 / 10.4 / 28.5).
        objective_scale: How objective values (and short runs) are mapped before the model
            learns them: ``"copula"``, their ranks as normal quantiles, or ``"standardized"``,
            their z-scores. The copula ignores how far apart results are, so a few failed
            trials cannot squash the top of the scale. Over 20 seeds (2026-12-02,
            ``benchmarks/defaults_study.py``) z-scores took 89.9 / 73.3 / 85.8 evaluations to
            the NAS-Bench-201 optimum against 59.9 / 58.0 / 77.4 and left more regret on 8 of
            9 NAS-Bench-Graph datasets.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_members: int | None = None,
        acquisition: str | None = None,
        n_candidates: int = 2048,
        search_space: SearchSpaceFunction | None = None,
        ensemble_config: EnsembleConfig | None = None,
        pretrained: PretrainedSurrogate | None = None,
        replay_pretraining: bool = True,
        multi_fidelity: MultiFidelity | None = None,
        trust_region: TrustRegion | None = None,
        objective_metrics: Mapping[int, str] | None = None,
        metric_bounds: Mapping[str, float] | None = None,
        measure_metrics: MeasureFunction | None = None,
        related_studies: Sequence[RelatedStudy] | None = None,
        numeric_surrogate: str = "auto",
        objective_scale: str = "copula",
    ) -> None:
        owner = type(self).__name__
        check_choice(owner, "numeric_surrogate", numeric_surrogate, NUMERIC_SURROGATES)
        check_choice(owner, "objective_scale", objective_scale, tuple(OBJECTIVE_SCALES))
        check_options(
            owner,
            acquisition=acquisition,
            search_space=search_space,
            measure_metrics=measure_metrics,
            replay_pretraining=replay_pretraining,
            typed={
                "ensemble_config": (ensemble_config, EnsembleConfig),
                "pretrained": (pretrained, PretrainedSurrogate),
                "multi_fidelity": (multi_fidelity, MultiFidelity),
                "trust_region": (trust_region, TrustRegion),
            },
        )
        n_candidates = check_int(owner, "n_candidates", n_candidates, minimum=1)
        self._objective_metrics = check_objective_metrics(owner, objective_metrics)
        self._metric_bounds = check_metric_bounds(owner, metric_bounds)
        config = resolve_ensemble_config(
            owner, n_members=n_members, config=ensemble_config, pretrained=pretrained
        )
        self._seed = int(np.random.SeedSequence(check_seed(owner, seed)).entropy % 2**32)
        n_startup_trials = check_int(owner, "n_startup_trials", n_startup_trials, minimum=0)
        self._n_startup_trials = max(n_startup_trials, _MIN_RESULTS)
        self._search_space_fn = search_space
        self._policy = FidelityPolicy(multi_fidelity, acquisition or _ACQUISITION)
        self._related = load_related(owner, related_studies) if related_studies else ()
        self._fitter = EnsembleFitter(
            config=config,
            seed=self._seed,
            pretrained=pretrained,
            replay_pretraining=replay_pretraining,
            head_weights=self._policy.head_weights,
            related=self._related,
        )
        surrogate = _numeric_surrogate(numeric_surrogate, pretrained, self._related)
        for message in _unused_options(surrogate, pretrained, self._related, multi_fidelity):
            warnings.warn(message, UserWarning, stacklevel=2)
        self._proposer = self._assemble(
            n_candidates,
            trust_region,
            measure_metrics,
            acquisition or _FRONT_ACQUISITION,
            acquisition or _KERNEL_ACQUISITION,
            surrogate,
            objective_scale,
        )
        self._lock = threading.RLock()
        self._declared_space: dict[str, BaseDistribution] | None = None
        self._warned: set[str] = set()
        self._patterns = PatternCache()
        self._checked_ids: set[int] = set()
        if search_space is not None and pretrained is not None:
            pretrained.check_space(self._declared())
        if search_space is not None and self._related:
            check_related_space(self._related, self._declared())

    def _assemble(
        self,
        n_candidates: int,
        trust_region: TrustRegion | None,
        measure_metrics: MeasureFunction | None,
        front_acquisition: str,
        kernel_acquisition: str,
        numeric_surrogate: str,
        objective_scale: str,
    ) -> Proposer:
        """The proposal pipeline, from the parts the options configure."""
        if measure_metrics is not None and self._search_space_fn is None:
            warnings.warn(
                "DeepEnsembleSampler(measure_metrics=...) without search_space=...: Optuna "
                "samples the first trial before the sampler knows the space, so that trial is "
                "not measured and may be over metric_bounds. Pass search_space= (the function "
                "making the objective's suggest_* calls) to check every trial.",
                stacklevel=3,
            )
        return Proposer(
            n_startup_trials=self._n_startup_trials,
            sources=CandidateSources(
                n_candidates=n_candidates,
                search_space=self._search_space_fn,
                related=self._related,
                n_related_startup=math.ceil(_RELATED_STARTUP_SHARE * self._n_startup_trials),
            ),
            fitter=self._fitter,
            policy=self._policy,
            trust_region=trust_region,
            constraints=Constraints(measure=measure_metrics, warn=self._warn_once),
            front_acquisition=front_acquisition,
            kernel_acquisition=kernel_acquisition,
            numeric_surrogate=numeric_surrogate,
            objective_scale=objective_scale,
            warn=self._warn_once,
        )

    def __getstate__(self) -> dict[str, Any]:
        """Picklable and deep-copyable (Optuna's recipe to save a sampler): the lock is not."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- BaseSampler interface
    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**32)
        self._fitter.seed = self._seed

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self._objectives(study)  # A study the options do not fit fails at its first trial.
        trials = coordination.snapshot(study)
        self._warn_if_all_failed(trials)
        self._warn_if_search_space_differs(trials)
        seen = [t.distributions for t in trials]
        if self._search_space_fn is not None:
            seen.insert(0, self._declared())
        if self._fitter.pretrained is not None:
            self._fitter.pretrained.check_space(union_search_space(seen))
            seen.insert(0, self._fitter.pretrained.distributions)
        if self._related and any(seen):
            # Not before the objective asked for something: trial 0 of a study without
            # search_space= cannot be checked, so it is drawn independently.
            check_related_space(self._related, union_search_space(seen))
            seen[:0] = [r.distributions for r in self._related]
        union = union_search_space(seen)
        space, unsupported = modelled_space(union)
        for name in unsupported:
            self._warn_once(
                f"unsupported:{name}",
                f"DeepEnsembleSampler cannot model parameter {name!r} of type "
                f"{type(union[name]).__name__}; it is sampled at random. "
                "Use suggest_float, suggest_int or suggest_categorical to have it modelled.",
            )
        return space

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        level = self._policy.level(trial)
        objectives = self._objectives(study)
        with self._lock:  # n_jobs > 1 shares this object between threads.
            context = ProposalContext.create(
                study,
                trial,
                search_space,
                seed=self._seed,
                level=level,
                reuse_pruned=self._policy.reuse_pruned(level),
                cache=self._patterns,
                objectives=objectives,
            )
            proposal = self._proposer.propose(context)
        if proposal is None:
            return {}  # The space is exhausted: let the independent sampler decide.
        coordination.set_user_attrs(study, trial, proposal.attrs)
        return context.encoder.to_params(proposal.row)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        seed = derive_seed(self._seed, trial.number, zlib.crc32(param_name.encode()))
        return RandomSampler(seed=seed).sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Decide the trial's fidelity, so the objective can ask it before any suggest call.

        The decision is stored as user attrs, where ``sample_relative`` reads the level back.
        """
        attrs = self._policy.new_trial_attrs(
            trial.number,
            lambda: [t for t in coordination.fresh_trials(study) if t.number != trial.number],
            self._n_startup_trials,
        )
        if attrs:
            coordination.set_user_attrs(study, trial, attrs)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        attrs = self._policy.finished_trial_attrs(trial, state)
        if attrs:
            coordination.set_user_attrs(study, trial, attrs)

    # ------------------------------------------------------------------------- inspection
    def predict_objective(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Each member's prediction for architectures, from the last fit, ``[members, n]``.

        Predictions are on the model's scale: Gaussian quantiles of the objective's ranks in
        the maximisation convention, so larger is better whatever the study's direction. Use
        them to rank architectures, for example to check the surrogate against known results.
        Where the kernel scored the last proposal (``numeric_surrogate``), its posterior draws
        are the members.
        """
        with self._lock:
            predictions = self._proposer.predict_objective(params)
        if predictions is None:
            raise RuntimeError(
                "The surrogate has not been fitted yet: it fits once the study has "
                f"{self._n_startup_trials} complete trials and samples the next one."
            )
        return predictions

    # ---------------------------------------------------------------------------- checks
    def _objectives(self, study: Study) -> Objectives:
        """The study's objectives with the sampler's options (which must fit them)."""
        directions = tuple(study.directions)
        multi_fidelity = self._policy.config is not None
        check_objectives(
            type(self).__name__, len(directions), self._objective_metrics, multi_fidelity
        )
        return Objectives(directions, self._objective_metrics, self._metric_bounds)

    def _declared(self) -> dict[str, BaseDistribution]:
        if self._declared_space is None:
            assert self._search_space_fn is not None
            rng = np.random.default_rng(derive_seed(self._seed, -1))
            self._declared_space = explore(self._search_space_fn, rng)
        return self._declared_space

    def _warn_if_all_failed(self, trials: Sequence[FrozenTrial]) -> None:
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) >= self._n_startup_trials and not self._policy.n_results(finished):
            self._warn_once(
                f"all-failed:{len(finished) // self._n_startup_trials}",
                f"All {len(finished)} finished trials failed or were pruned, so the ensemble "
                "has nothing to learn from and sampling stays random. Check the objective "
                "(see each trial's fail reason in the logs or the dashboard).",
            )

    def _warn_if_search_space_differs(self, trials: Sequence[FrozenTrial]) -> None:
        """Dry-run ``search_space`` on each new finished trial's values; warn at a difference.

        A function that asks other parameters than the objective gives candidates a wrong
        activity, and the model a wrong view of the space.
        """
        if self._search_space_fn is None or "search-space" in self._warned:
            return
        rng = np.random.default_rng(derive_seed(self._seed, -2))
        for t in fully_suggested(trials):
            if coordination.trial_id(t) in self._checked_ids:
                continue
            self._checked_ids.add(coordination.trial_id(t))
            found = differences(self._search_space_fn, t, rng)
            if found:
                self._warn_once(
                    "search-space",
                    f"search_space does not make the objective's suggest_* calls (trial "
                    f"{t.number}; {'; '.join(found)}). The sampler relies on it to know "
                    "which parameters a candidate uses: call the same function at the start "
                    "of the objective, or pass search_space=None.",
                )
                return

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

"""``DeepEnsembleSampler``: Bayesian optimisation for NAS with a deep-ensemble surrogate."""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import threading
from typing import Any
import warnings
import zlib

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens import coordination
from optuna_deepens._validation import check_int
from optuna_deepens._validation import check_seed
from optuna_deepens._validation import check_type
from optuna_deepens.acquisition import Scores
from optuna_deepens.acquisition import check_acquisition
from optuna_deepens.acquisition import score
from optuna_deepens.activity import ActivityRules
from optuna_deepens.candidates import deduplicate
from optuna_deepens.candidates import grid
from optuna_deepens.candidates import mutate
from optuna_deepens.candidates import sample_uniform
from optuna_deepens.dry_run import SearchSpaceFunction
from optuna_deepens.dry_run import dry_run
from optuna_deepens.dry_run import explore
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import modelled_space
from optuna_deepens.encoding import union_search_space
from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.ensemble import Rows
from optuna_deepens.multi_fidelity import COST_ATTR
from optuna_deepens.multi_fidelity import FIDELITY_ATTR
from optuna_deepens.multi_fidelity import HIGH
from optuna_deepens.multi_fidelity import MultiFidelity
from optuna_deepens.multi_fidelity import attrs_for
from optuna_deepens.multi_fidelity import decide_fidelity
from optuna_deepens.multi_fidelity import promotion_order
from optuna_deepens.multi_fidelity import trial_cost
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.taken import PatternCache
from optuna_deepens.taken import TakenArchitectures
from optuna_deepens.taken import fully_suggested
from optuna_deepens.taken import params_pattern
from optuna_deepens.taken import taken_architectures
from optuna_deepens.taken import trained_fully
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.training_data import build_training_data
from optuna_deepens.training_data import is_usable
from optuna_deepens.training_data import low_fidelity_results
from optuna_deepens.training_data import usable_trials
from optuna_deepens.training_data import value_from_step
from optuna_deepens.transforms import CopulaTransform
from optuna_deepens.trust_region import TrustRegion

ATTR_PREFIX = "deepens_"
_N_INCUMBENTS = 8
_MUTATION_SHARE = 0.75
_MAX_PUBLISH_RETRIES = 3
# Discrete spaces up to this size are enumerated once random candidates are all taken.
_MAX_GRID = 2**16
_STARTUP_DRAWS = 256
# PI and EI ask for an improvement of this many standard deviations of the observed values.
# Without it PI refines the incumbent's neighbourhood for ever (measured on a 6-edge, 5-op
# additive space: best after 60 trials 14.8-17.0 of 18 with no margin, 17.9-18.0 with 0.05).
_PI_MARGIN = 0.05
# Results the copula needs before the model can be fitted, whatever n_startup_trials says.
_MIN_RESULTS = 2
# Multi-fidelity: full results the objective's head needs before it guides full trainings, and
# which low-fidelity results may be promoted to a full training.
_MIN_FULL_RESULTS = 3
_PROMOTABLE_SHARE = 0.25
_MIN_PROMOTABLE = 4


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
            ``"ucb"``. Thompson sampling needed 0.65-0.94x the evaluations of PI on NAS-Bench-201
            (see :mod:`optuna_deepens.acquisition`).
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
            but cost evaluations on CIFAR-10 and CIFAR-100. Used in mono-fidelity studies only.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_members: int | None = None,
        acquisition: str = "ts",
        n_candidates: int = 2048,
        search_space: SearchSpaceFunction | None = None,
        ensemble_config: EnsembleConfig | None = None,
        pretrained: PretrainedSurrogate | None = None,
        replay_pretraining: bool = True,
        multi_fidelity: MultiFidelity | None = None,
        trust_region: TrustRegion | None = None,
    ) -> None:
        owner = type(self).__name__
        check_acquisition(acquisition)
        seed = check_seed(owner, seed)
        n_startup_trials = check_int(owner, "n_startup_trials", n_startup_trials, minimum=0)
        n_candidates = check_int(owner, "n_candidates", n_candidates, minimum=1)
        if search_space is not None and not callable(search_space):
            raise TypeError(
                f"{owner}(search_space={search_space!r}): expected a function taking a trial "
                "and making the objective's suggest_* calls."
            )
        check_type(owner, "ensemble_config", ensemble_config, EnsembleConfig)
        check_type(owner, "pretrained", pretrained, PretrainedSurrogate)
        check_type(owner, "multi_fidelity", multi_fidelity, MultiFidelity)
        check_type(owner, "trust_region", trust_region, TrustRegion)
        if not isinstance(replay_pretraining, bool):
            raise TypeError(
                f"{owner}(replay_pretraining={replay_pretraining!r}): expected a bool."
            )
        config = ensemble_config or EnsembleConfig()
        if n_members is not None:
            n_members = check_int(
                owner, "n_members", n_members, minimum=2, why="their spread is the uncertainty"
            )
            default = EnsembleConfig().n_members
            if ensemble_config is not None and n_members != ensemble_config.n_members != default:
                raise ValueError(
                    f"{owner}(n_members={n_members}, ensemble_config=EnsembleConfig("
                    f"n_members={ensemble_config.n_members}, ...)): two member counts. Give "
                    "it once, in either place."
                )
            config = dataclasses.replace(config, n_members=n_members)
        if pretrained is not None:
            shape = pretrained.config
            if n_members is not None and n_members != shape.n_members:
                raise ValueError(
                    f"{owner}(n_members={n_members}): the pretrained surrogate has "
                    f"{shape.n_members} members and the sampler adopts its shape. Leave "
                    "n_members out, or pretrain with EnsembleConfig(n_members=...)."
                )
            config = dataclasses.replace(
                config,
                n_members=shape.n_members,
                trunk_sizes=shape.trunk_sizes,
                head_size=shape.head_size,
            )
        self._seed = int(np.random.SeedSequence(seed).entropy % 2**32)
        # Like Optuna's samplers, 0 and 1 are accepted: the model starts once it can
        # standardise two results.
        self._n_startup_trials = max(n_startup_trials, _MIN_RESULTS)
        self._acquisition = acquisition
        self._n_candidates = n_candidates
        self._search_space_fn = search_space
        self._config = config
        self._pretrained = pretrained
        self._multi_fidelity = multi_fidelity
        self._replay_pretraining = replay_pretraining
        self._trust_region = trust_region
        self._replay_rows: dict[Hashable, Rows] = {}
        self._lock = threading.RLock()
        self._ensemble: DeepEnsemble | None = None
        self._ensemble_key: tuple[Any, ...] | None = None
        self._fitted_ids: frozenset[int] = frozenset()
        self._declared_space: dict[str, BaseDistribution] | None = None
        self._warned: set[str] = set()
        self._patterns = PatternCache()
        self._checked_ids: set[int] = set()
        self._fitted_encoder: SearchSpaceEncoder | None = None
        if pretrained is not None and search_space is not None:
            pretrained.check_space(self._declared())

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

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _raise_if_multi_objective(study)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        self._warn_if_all_failed(trials)
        self._warn_if_search_space_differs(trials)
        seen = [t.distributions for t in trials]
        if self._search_space_fn is not None:
            seen.insert(0, self._declared())
        if self._pretrained is not None:
            self._pretrained.check_space(union_search_space(seen))
            seen.insert(0, self._pretrained.distributions)
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
        _raise_if_multi_objective(study)
        if not search_space:
            return {}
        with self._lock:  # n_jobs > 1 shares this object between threads.
            return self._propose(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _raise_if_multi_objective(study)
        seed = _derive_seed(self._seed, trial.number, zlib.crc32(param_name.encode()))
        return RandomSampler(seed=seed).sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Decide the trial's fidelity, so the objective can ask it before any suggest call."""
        if self._multi_fidelity is None:
            return
        others = [t for t in coordination.fresh_trials(study) if t.number != trial.number]
        level = decide_fidelity(
            self._multi_fidelity,
            trial.number,
            others,
            self._n_results(others),
            self._n_startup_trials,
        )
        attrs = attrs_for(self._multi_fidelity, level)
        coordination.set_user_attrs(study, trial, attrs)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if self._multi_fidelity is None:
            return
        cost = trial_cost(trial, state, self._multi_fidelity.full_step)
        coordination.set_user_attrs(study, trial, {COST_ATTR: cost})

    # ------------------------------------------------------------------------- proposal
    def _n_results(self, trials: Sequence[FrozenTrial]) -> int:
        """Finished trials the model can learn the search target from."""
        if self._multi_fidelity is None:
            return len(usable_trials(trials))
        low_step = self._multi_fidelity.low_step
        return sum(
            1
            for t in trials
            if t.state.is_finished() and (is_usable(t) or low_fidelity_results(t, low_step))
        )

    def _propose(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        encoder = SearchSpaceEncoder(search_space)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        others = [t for t in trials if t.number != trial.number]
        rng = np.random.default_rng(_derive_seed(self._seed, trial.number))
        level = trial.user_attrs.get(FIDELITY_ATTR)
        # A full training may repeat an architecture seen only at low fidelity: a promotion.
        reuse_pruned = level == HIGH
        taken = self._taken(encoder, others, reuse_pruned)
        # Parameters fixed by enqueue_trial override the candidates' values: check the rows
        # the objective will really see.
        pinned = params_pattern(encoder, trial.system_attrs.get("fixed_params", {})) or ()

        if self._n_results(others) < self._n_startup_trials:
            values, active = self._startup_candidates(encoder, others, trial.number, rng)
            values, active, keys = self._free(
                encoder, values, active, others, trial.number, rng, taken, pinned
            )
            if len(keys) == 0:
                return {}  # The space is exhausted: let the independent sampler decide.
            order = np.arange(len(keys))
            attrs: dict[str, Any] = {f"{ATTR_PREFIX}source": "startup"}
            stats = None
        else:
            data = build_training_data(
                others,
                encoder,
                study.direction,
                low_step=self._multi_fidelity and self._multi_fidelity.low_step,
            )
            if data.n_clipped:
                self._warn_once(
                    "inf",
                    f"{data.n_clipped} trial(s) returned an infinite value; the model clips it "
                    "to the finite range. Return a finite penalty instead to rank failures.",
                )
            ensemble = self._fit(encoder, data)
            head = self._head_for(level, data)
            source = "model"
            region = self._trust_region_candidates(
                encoder, data, head, others, trial.number, rng, taken
            )
            if region is not None:
                values, active, radius = region
            else:
                values, active = self._model_candidates(
                    encoder, data, head, others, trial.number, rng
                )
            low_values: dict[Hashable, float] = {}
            if level == HIGH:
                promotable, low_results = self._promotable(encoder, study.direction, others)
                fresh = ~taken.contains(promotable)
                promotable, low_results = promotable[fresh], low_results[fresh]
                low_values = dict(zip(encoder.keys(promotable), low_results))
                if len(promotable) and self._multi_fidelity.schedule == "promotion":
                    values, active, source = promotable, ~np.isnan(promotable), "promotion"
                else:
                    values = np.concatenate([values, promotable])
                    active = np.concatenate([active, ~np.isnan(promotable)])
            values, active, keys = self._free(
                encoder,
                values,
                active,
                others,
                trial.number,
                rng,
                taken,
                pinned,
                enumerate_rest=source != "promotion",  # Promotions come from short runs only.
            )
            if len(keys) == 0:
                return {}
            predictions = ensemble.predict(
                encoder.encode(np.where(active, values, np.nan)),
                head,
                condition=0.0 if head == LOW_FIDELITY else None,
            )
            margin = _PI_MARGIN * float(np.nanstd(data.targets[head]))
            best = data.best(head)
            assert best is not None
            acquisition_name = self._acquisition_for(head)
            stats = score(acquisition_name, predictions, best, rng, margin=margin)
            order = stats.order
            if source == "promotion":
                predicted_full = stats.mean if head == OBJECTIVE else None
                order = promotion_order(np.array([low_values[k] for k in keys]), predicted_full)
            attrs = {f"{ATTR_PREFIX}source": source}
            if region is not None:
                attrs[f"{ATTR_PREFIX}trust_radius"] = radius

        choice = self._claim(study, trial, encoder, values, active, order, rng, reuse_pruned)
        if stats is not None:
            attrs.update(
                self._explain(study, data.transforms[head], stats, choice, acquisition_name)
            )
        coordination.set_user_attrs(study, trial, attrs)
        return encoder.to_params(values[choice])

    def _acquisition_for(self, head: str) -> str:
        """Short runs use ``MultiFidelity.low_fidelity_acquisition``; the rest the sampler's."""
        if head == LOW_FIDELITY and self._multi_fidelity is not None:
            return self._multi_fidelity.low_fidelity_acquisition
        return self._acquisition

    def _head_for(self, level: str | None, data: TrainingData) -> str:
        """The head whose acquisition picks this trial's architecture.

        Low-fidelity trials search by the low-fidelity head. Full trainings use the objective's
        head once it has learnt from a few full results; before that its predictions are noise
        and the low-fidelity head is the better guide.
        """
        if level is None:
            return OBJECTIVE
        n_full = int(np.isfinite(data.targets[OBJECTIVE]).sum())
        head = OBJECTIVE if level == HIGH and n_full >= _MIN_FULL_RESULTS else LOW_FIDELITY
        if data.best(head) is None:  # No short run yet (a study resumed in this mode).
            return OBJECTIVE
        return head

    def _promotable(
        self,
        encoder: SearchSpaceEncoder,
        direction: optuna.study.StudyDirection,
        trials: Sequence[FrozenTrial],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best architectures trained only at low fidelity so far, and their results.

        Rows are internal values; results are in the maximisation convention.

        Only the top share by low-fidelity result qualifies: a short run that went badly is
        strong evidence against a full training, whatever the model extrapolates.
        """
        assert self._multi_fidelity is not None
        low_step = self._multi_fidelity.low_step
        results = [
            (t, value_from_step(t, low_step))
            for t in trials
            if t.state == TrialState.PRUNED and t.params and not trained_fully(t)
        ]
        results = [(t, v) for t, v in results if v is not None]
        sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        values = sign * np.array([v for _, v in results], dtype=float)
        keep = max(_MIN_PROMOTABLE, int(np.ceil(_PROMOTABLE_SHARE * len(results))))
        best = np.argsort(-values, kind="stable")[:keep]
        return encoder.to_internal(results[i][0].params for i in best), values[best]

    def _explain(
        self,
        study: Study,
        transform: CopulaTransform,
        stats: Scores,
        choice: int,
        acquisition: str,
    ) -> dict[str, Any]:
        """The prediction behind a choice, in the objective's own units, for the dashboard.

        For a low-fidelity trial it is the prediction of the low-fidelity value.
        """
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        mean, std = float(stats.mean[choice]), float(stats.std[choice])
        low, centre, high = transform.inverse(np.array([mean - std, mean, mean + std]))
        value = float(stats.value[choice])
        return {
            f"{ATTR_PREFIX}predicted_mean": sign * float(centre),
            f"{ATTR_PREFIX}predicted_std": float(high - low) / 2,
            f"{ATTR_PREFIX}acquisition": float(np.exp(value)) if acquisition == "pi" else value,
            f"{ATTR_PREFIX}acquisition_function": acquisition,
        }

    def _claim(
        self,
        study: Study,
        trial: FrozenTrial,
        encoder: SearchSpaceEncoder,
        values: np.ndarray,
        active: np.ndarray,
        order: np.ndarray,
        rng: np.random.Generator,
        reuse_pruned: bool = False,
    ) -> int:
        """Publish the best candidate no other worker holds; re-check after publishing.

        Two workers sampling at the same moment can both pick the same architecture. Each reads
        the running trials' proposals right before and right after publishing its own; on a
        clash it moves on to a random one of its next-best candidates.
        """
        position = 0
        choice = int(order[0])
        for attempt in range(_MAX_PUBLISH_RETRIES + 1):
            held = self._held_by_others(study, trial, encoder, reuse_pruned).contains(values)
            remaining = [int(i) for i in order[position:] if not held[i]]
            if not remaining:
                return choice
            if attempt == 0:
                choice = remaining[0]
            else:
                choice = remaining[int(rng.integers(min(len(remaining), 4 * attempt)))]
            position = int(np.flatnonzero(order == choice)[0])
            proposal = dict(zip(encoder.names, np.where(active[choice], values[choice], np.nan)))
            coordination.publish_proposal(study, trial._trial_id, proposal)
            if not self._held_by_others(study, trial, encoder, reuse_pruned).contains(
                values[[choice]]
            )[0]:
                return choice
        return choice

    def _held_by_others(
        self,
        study: Study,
        trial: FrozenTrial,
        encoder: SearchSpaceEncoder,
        reuse_pruned: bool = False,
    ) -> TakenArchitectures:
        """Architectures of every other trial in a fresh read of storage, proposals included.

        Not only RUNNING trials: another worker may have published, evaluated and finished an
        architecture since this trial's snapshot was taken.
        """
        others = [t for t in coordination.fresh_trials(study) if t.number != trial.number]
        return self._taken(encoder, others, reuse_pruned)

    def _taken(
        self,
        encoder: SearchSpaceEncoder,
        trials: Sequence[FrozenTrial],
        reuse_pruned: bool = False,
    ) -> TakenArchitectures:
        """Every architecture evaluated, running, or proposed by another worker.

        With ``reuse_pruned``, architectures that were only pruned stay available.
        """
        return taken_architectures(
            encoder, trials, cache=self._patterns, reuse_pruned=reuse_pruned
        )

    # ----------------------------------------------------------------------- candidates
    def _startup_candidates(
        self,
        encoder: SearchSpaceEncoder,
        trials: Sequence[FrozenTrial],
        number: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        values = sample_uniform(encoder, _STARTUP_DRAWS, rng)
        if self._search_space_fn is not None:
            return self._dry_run_all(encoder, values, number, rng)
        return values, _learnt_activity(encoder, trials, values, np.empty((0, 0), bool), rng)

    def _model_candidates(
        self,
        encoder: SearchSpaceEncoder,
        data: TrainingData,
        head: str,
        trials: Sequence[FrozenTrial],
        number: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform draws and mutations of the best architectures by ``head``'s target."""
        n_mutants = int(self._n_candidates * _MUTATION_SHARE)
        best_first = np.argsort(-data.targets[head], kind="stable")
        parents = data.internal[best_first[:_N_INCUMBENTS]]
        mutants, parent_index = mutate(encoder, parents, n_mutants, rng)
        uniform = sample_uniform(encoder, self._n_candidates - n_mutants, rng)
        values = np.concatenate([mutants, uniform])
        return self._with_activity(encoder, trials, values, parents[parent_index], number, rng)

    def _trust_region_candidates(
        self,
        encoder: SearchSpaceEncoder,
        data: TrainingData,
        head: str,
        trials: Sequence[FrozenTrial],
        number: int,
        rng: np.random.Generator,
        taken: TakenArchitectures,
    ) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Edits of the incumbent within the trust radius; ``None`` to search globally.

        Also ``None`` when every architecture within the radius is taken: an exhausted region
        must not stall the search.
        """
        if self._trust_region is None or self._multi_fidelity is not None or head != OBJECTIVE:
            return None
        # The first rows of the data are the COMPLETE trials, in the order of ``trials``.
        observed = data.targets[OBJECTIVE][: len(usable_trials(trials))]
        radius = self._trust_region.radius(observed)
        if radius == 0:
            return None
        incumbent = data.internal[[int(np.argmax(observed))]]
        values, _ = mutate(encoder, incumbent, self._n_candidates, rng, max_edits=radius)
        parents = np.repeat(incumbent, len(values), axis=0)
        values, active = self._with_activity(encoder, trials, values, parents, number, rng)
        if taken.contains(values).all():
            return None
        return values, active, radius

    def _with_activity(
        self,
        encoder: SearchSpaceEncoder,
        trials: Sequence[FrozenTrial],
        values: np.ndarray,
        parents: np.ndarray,
        number: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates with their active parameters: exact by dry runs, else learnt.

        ``parents`` holds the parent of each of the first ``len(parents)`` rows (mutants);
        the remaining rows are uniform draws.
        """
        if self._search_space_fn is not None:
            return self._dry_run_all(encoder, values, number, rng)
        return values, _learnt_activity(encoder, trials, values, ~np.isnan(parents), rng)

    def _dry_run_all(
        self,
        encoder: SearchSpaceEncoder,
        values: np.ndarray,
        number: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact candidates: replay ``search_space`` on each row; unused entries are inactive."""
        assert self._search_space_fn is not None
        exact = encoder.to_internal(
            dry_run(self._search_space_fn, encoder.to_params(row), rng, number).params
            for row in values
        )
        active = ~np.isnan(exact)
        return np.where(active, exact, values), active

    def _free(
        self,
        encoder: SearchSpaceEncoder,
        values: np.ndarray,
        active: np.ndarray,
        trials: Sequence[FrozenTrial],
        number: int,
        rng: np.random.Generator,
        taken: TakenArchitectures,
        pinned: Sequence[tuple[int, float]],
        *,
        enumerate_rest: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
        """The candidates no other trial holds, pinned values applied.

        When every one is taken and ``enumerate_rest``, a small discrete space is enumerated
        (up to ``_MAX_GRID`` points): near its end the few free architectures are easy to miss
        by random draws. With still nothing free, running trials' whole proposals are trusted
        (they may hold a conditional parameter they have not asked yet).
        """
        free = deduplicate(encoder, _pin(values, pinned), active, taken)
        if free[2] or not enumerate_rest:
            return free
        values = grid(encoder, _MAX_GRID)
        if values is None:
            return free
        parents = np.empty((0, encoder.n_params))
        values, active = self._with_activity(encoder, trials, values, parents, number, rng)
        values = _pin(values, pinned)
        free = deduplicate(encoder, values, active, taken)
        if not free[2]:
            whole = taken_architectures(
                encoder, trials, cache=self._patterns, whole_proposals=True
            )
            free = deduplicate(encoder, values, active, whole)
        return free

    # -------------------------------------------------------------------------- fitting
    def _fit(self, encoder: SearchSpaceEncoder, data: TrainingData) -> DeepEnsemble:
        fidelities = [name for name in data.transforms if name != OBJECTIVE]
        heads = [OBJECTIVE, *fidelities, *self._metric_heads(data)]
        conditioned = tuple(data.conditions)
        key = (encoder.signature, tuple(heads), conditioned)
        warm = (
            self._ensemble is not None
            and self._ensemble_key == key
            and self._fitted_ids <= data.trial_ids
        )
        if warm:
            assert self._ensemble is not None
            if self._fitted_ids == data.trial_ids:
                return self._ensemble
            steps = self._config.warm_steps
        else:
            seed = _derive_seed(self._seed, len(data.trial_ids))
            if self._pretrained is None:
                self._ensemble = DeepEnsemble(
                    encoder.n_features,
                    heads,
                    config=self._config,
                    seed=seed,
                    conditioned=conditioned,
                )
            else:
                self._ensemble = self._pretrained.ensemble(
                    heads, config=self._config, seed=seed, conditioned=conditioned
                )
            self._ensemble_key = key
            steps = self._config.cold_steps
        weights = None
        if self._multi_fidelity is not None:
            weights = {OBJECTIVE: self._multi_fidelity.high_fidelity_weight}
        self._ensemble.fit(
            data.features,
            data.targets,
            steps,
            conditions=data.conditions,
            replay=self._replay(encoder),
            head_weights=weights,
        )
        self._fitted_ids = data.trial_ids
        self._fitted_encoder = encoder
        return self._ensemble

    def _metric_heads(self, data: TrainingData) -> list[str]:
        """Metrics of the pretraining table first, then any other recorded on trials."""
        pretrained = self._pretrained.metric_names if self._pretrained is not None else ()
        return [*pretrained, *sorted(set(data.metric_names) - set(pretrained))]

    def _replay(self, encoder: SearchSpaceEncoder) -> Rows | None:
        if self._pretrained is None or not self._replay_pretraining:
            return None
        key = encoder.signature
        if key not in self._replay_rows:
            self._replay_rows[key] = self._pretrained.pretraining_set.rows(
                encoder, self._pretrained.metric_names
            )
        return self._replay_rows[key]

    def predict_objective(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Each member's prediction for architectures, from the last fit, ``[members, n]``.

        Predictions are on the model's scale: Gaussian quantiles of the objective's ranks in
        the maximisation convention, so larger is better whatever the study's direction. Use
        them to rank architectures, for example to check the surrogate against known results.
        """
        with self._lock:
            if self._ensemble is None or self._fitted_encoder is None:
                raise RuntimeError(
                    "The ensemble has not been fitted yet: it fits once the study has "
                    f"{self._n_startup_trials} complete trials and samples the next one."
                )
            encoder = self._fitted_encoder
            return self._ensemble.predict(encoder.encode(encoder.to_internal(params)), OBJECTIVE)

    # ---------------------------------------------------------------------------- checks
    def _declared(self) -> dict[str, BaseDistribution]:
        if self._declared_space is None:
            assert self._search_space_fn is not None
            rng = np.random.default_rng(_derive_seed(self._seed, -1))
            self._declared_space = explore(self._search_space_fn, rng)
        return self._declared_space

    def _warn_if_all_failed(self, trials: Sequence[FrozenTrial]) -> None:
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) >= self._n_startup_trials and not self._n_results(finished):
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
        rng = np.random.default_rng(_derive_seed(self._seed, -2))
        for t in fully_suggested(trials):
            if t._trial_id in self._checked_ids:
                continue
            self._checked_ids.add(t._trial_id)
            asked = dry_run(self._search_space_fn, t.params, rng, t.number).distributions
            only_space = sorted(set(asked) - set(t.distributions))
            only_objective = sorted(set(t.distributions) - set(asked))
            changed = sorted(
                n for n in set(asked) & set(t.distributions) if asked[n] != t.distributions[n]
            )
            if only_space or only_objective or changed:
                differences = [
                    f"{label}: {names}"
                    for label, names in (
                        ("asked by search_space only", only_space),
                        ("asked by the objective only", only_objective),
                        ("with other distributions", changed),
                    )
                    if names
                ]
                self._warn_once(
                    "search-space",
                    f"search_space does not make the objective's suggest_* calls (trial "
                    f"{t.number}; {'; '.join(differences)}). The sampler relies on it to know "
                    "which parameters a candidate uses: call the same function at the start "
                    "of the objective, or pass search_space=None.",
                )
                return

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)


def _learnt_activity(
    encoder: SearchSpaceEncoder,
    trials: Sequence[FrozenTrial],
    values: np.ndarray,
    parent_masks: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Activity of candidates when no search_space function can be replayed.

    The first ``len(parent_masks)`` rows keep their parent's branches, the others those of a
    random earlier trial, except where a switch learnt from the trials says otherwise.
    """
    observed = encoder.to_internal(t.params for t in fully_suggested(trials))
    n_templates = len(values) - len(parent_masks)
    if len(observed) == 0:
        templates = np.ones((n_templates, encoder.n_params), dtype=bool)
    else:
        templates = ~np.isnan(observed)[rng.integers(len(observed), size=n_templates)]
    guess = np.concatenate([parent_masks.reshape(-1, encoder.n_params), templates])
    return ActivityRules(encoder, observed).apply(values, guess)


def _pin(values: np.ndarray, pinned: Sequence[tuple[int, float]]) -> np.ndarray:
    """``values`` with the pinned columns set (a copy when anything is pinned)."""
    if not pinned:
        return values
    values = values.copy()
    for column, value in pinned:
        values[:, column] = value
    return values


def _raise_if_multi_objective(study: Study) -> None:
    if study._is_multi_objective():
        raise ValueError(
            "DeepEnsembleSampler supports single-objective studies only. Optimise one "
            "objective (for example accuracy with a latency penalty) or use "
            "optuna.samplers.NSGAIISampler for several."
        )


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(1)[0])

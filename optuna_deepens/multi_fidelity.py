"""Multi-fidelity search: which trials train fully, how the objective learns it, what it cost.

Thesis 5.2.4: many short trainings (the value reported at an early step, say epoch 12) and a few
full ones share the ensemble's embedding, each through its own head, so every short run also
sharpens the prediction of full results. By default one Gaussian process learns both instead,
the fidelity an input column (``Proposer._uses_kernel`` says why); the schedule is the same.
In Optuna terms:

* the sampler decides, when a trial starts, its *level*: ``"low"`` (a short run) or
  ``"high"`` (a full training), and writes the level and the step budget to the trial's user
  attrs (visible in the dashboard);
* the objective asks :func:`fidelity` how far to train and reports intermediate values as
  usual; :class:`LowFidelityPruner` stops low-fidelity trials at the low step;
* every finished trial records its cost in equivalent full evaluations (steps trained / full
  steps) as the ``deepens_cost`` user attr.

Two schedules decide the level. ``"fixed"`` is the thesis's: p low-fidelity trials per
iteration and q full ones every f iterations. ``"promotion"`` spends the same share of the cost
on full trainings (or ``full_cost_share``), but gives them to architectures already evaluated at
low fidelity, ranked by their short run and the model's predicted full result together.

Every decision the sampler takes about levels (which head guides a proposal, which
acquisition, what may be promoted, how results are counted) is in :class:`FidelityPolicy`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens._validation import check_float
from optuna_deepens._validation import check_int
from optuna_deepens._validation import check_type
from optuna_deepens.acquisition import check_acquisition
from optuna_deepens.coordination import BUDGET_ATTR
from optuna_deepens.coordination import COST_ATTR
from optuna_deepens.coordination import FIDELITY_ATTR
from optuna_deepens.coordination import HIGH
from optuna_deepens.coordination import LOW
from optuna_deepens.coordination import trained_fully
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData
from optuna_deepens.training_data import is_usable
from optuna_deepens.training_data import low_fidelity_results
from optuna_deepens.training_data import usable_trials
from optuna_deepens.training_data import value_from_step
from optuna_deepens.transforms import direction_sign
from optuna_deepens.transforms import step_condition

SCHEDULES = ("promotion", "fixed")
# Full results the objective's head needs before it guides full trainings, and which
# low-fidelity results may be promoted to a full training.
_MIN_FULL_RESULTS = 3
_PROMOTABLE_SHARE = 0.25
_MIN_PROMOTABLE = 4


@dataclass(frozen=True)
class MultiFidelity:
    """How a study mixes short and full trainings.

    Args:
        low_step: Step (epoch) whose intermediate value is the low-fidelity result.
        full_step: Steps of a full training; costs are counted in units of it.
        schedule: ``"promotion"`` (the model picks which low-fidelity architectures train
            fully) or ``"fixed"`` (the thesis's p/q/f rhythm, full trials chosen like any).
        low_per_iteration: p, low-fidelity trials per iteration (thesis: 5).
        high_per_round: q, full trials per round (thesis: 3).
        iterations_per_round: f, iterations per round (thesis: 10).
        high_fidelity_weight: Where the ensemble scores: weight of the full-result head's loss
            against the low one's; the thesis gives full results more importance by training
            longer on them.
        low_fidelity_acquisition: Where the ensemble scores (the kernel's is log EI at both
            levels): acquisition of the short-run search (the sampler's
            ``acquisition`` still picks full trainings). Short runs are cheap, so the default,
            UCB (mean + 2 spreads), follows the model's mean with some exploration. PI, against
            a best result that a smooth model under-predicts, preferred uncertain mediocre cells
            and left the predicted best untried: on NAS-Bench-201 CIFAR-100 (pretrained,
            20 seeds) UCB, with promotions by the predicted mean, found the optimum in 14.6
            equivalent evaluations on average, PI in 20.5.
        full_cost_share: Share of the cost the promotion schedule spends on full trainings.
            ``None`` takes the fixed schedule's share (p, q, f above: 0.5 at the thesis's 12 of
            200 epochs, but only 0.21 at 12 of 52, where a short run costs four times more).
    """

    low_step: int
    full_step: int
    schedule: str = "promotion"
    low_per_iteration: int = 5
    high_per_round: int = 3
    iterations_per_round: int = 10
    high_fidelity_weight: float = 2.0
    low_fidelity_acquisition: str = "ucb"
    full_cost_share: float | None = None

    def __post_init__(self) -> None:
        owner = "MultiFidelity"
        for name in ("low_step", "full_step"):
            check_int(owner, name, getattr(self, name), minimum=0)  # Range: below.
        for name in ("low_per_iteration", "high_per_round", "iterations_per_round"):
            check_int(owner, name, getattr(self, name), minimum=1)
        check_float(owner, "high_fidelity_weight", self.high_fidelity_weight, positive=True)
        if not 0 < self.low_step < self.full_step:
            raise ValueError(
                f"Need 0 < low_step < full_step; got low_step={self.low_step}, "
                f"full_step={self.full_step}."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; choose one of {SCHEDULES}.")
        check_acquisition(self.low_fidelity_acquisition, "low_fidelity_acquisition")
        share = self.full_cost_share
        if share is not None and (not isinstance(share, (int, float)) or not 0 < share < 1):
            raise ValueError(
                f"full_cost_share={share!r}; give a share in (0, 1), or None for "
                "the fixed schedule's."
            )
        if share is not None and self.schedule == "fixed":
            raise ValueError(
                "full_cost_share is the promotion schedule's; the fixed schedule's share follows "
                "low_per_iteration, high_per_round and iterations_per_round."
            )

    @property
    def low_cost(self) -> float:
        return self.low_step / self.full_step

    @property
    def round_length(self) -> int:
        """Trials per round of the fixed schedule: p * f low, then q high."""
        return self.low_per_iteration * self.iterations_per_round + self.high_per_round

    @property
    def high_cost_share(self) -> float:
        """Share of the cost spent on full trainings: ``full_cost_share``, or the fixed
        schedule's (0.5 for the thesis)."""
        if self.full_cost_share is not None:
            return self.full_cost_share
        low = self.low_per_iteration * self.iterations_per_round * self.low_cost
        return self.high_per_round / (self.high_per_round + low)

    def budget(self, level: str) -> int:
        """Steps a trial of ``level`` (``"low"`` or ``"high"``) trains for."""
        return self.low_step if level == LOW else self.full_step

    def condition(self, step: float) -> float:
        """What the low-fidelity head reads of a step: 0 at ``low_step``, log-scaled."""
        return step_condition(step, self.low_step)


# ------------------------------------------------------------------------ the objective's API
def fidelity(trial: optuna.Trial | FrozenTrial, default: int | None = None) -> int | None:
    """Steps the objective should train ``trial`` for, as decided by the sampler.

    Returns ``default`` for a trial no multi-fidelity sampler decided (another sampler, or
    ``DeepEnsembleSampler`` without ``multi_fidelity``), so one objective works with all.
    """
    budget = trial.user_attrs.get(BUDGET_ATTR)
    return default if budget is None else int(budget)


def is_low_fidelity(trial: optuna.Trial | FrozenTrial) -> bool:
    return trial.user_attrs.get(FIDELITY_ATTR) == LOW


class LowFidelityPruner(BasePruner):
    """Prunes low-fidelity trials once they report their budget step; defers the rest.

    Args:
        base: Pruner for full-fidelity trials (Median, Hyperband, ...). ``None`` never prunes
            them.
    """

    def __init__(self, base: BasePruner | None = None) -> None:
        check_type("LowFidelityPruner", "base", base, BasePruner)
        self._base = base

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if is_low_fidelity(trial):
            step = trial.last_step
            budget = fidelity(trial)
            return step is not None and budget is not None and step >= budget
        return self._base is not None and self._base.prune(study, trial)


# ------------------------------------------------------------------------ schedule and cost
def trial_cost(trial: FrozenTrial, state: TrialState, full_step: int) -> float:
    """Equivalent full evaluations a finished trial cost: its last step / the full step.

    A complete trial trained fully (cost 1) unless it reported a later step, which counts.
    """
    last = trial.last_step
    if state == TrialState.COMPLETE:
        return max(1.0, (last or 0) / full_step)
    return 0.0 if last is None else last / full_step


def planned_cost(trial: FrozenTrial, config: MultiFidelity) -> float:
    """A trial's cost if finished, else what its fidelity will cost."""
    cost = trial.user_attrs.get(COST_ATTR)
    if cost is not None and trial.state.is_finished():
        return float(cost)
    return config.low_cost if is_low_fidelity(trial) else 1.0


def decide_level(
    config: MultiFidelity,
    number: int,
    trials: Sequence[FrozenTrial],
    n_low_results: int,
    n_startup_trials: int,
) -> str:
    """Low or high fidelity for trial ``number``; a function of storage, so resumable.

    Args:
        config: The schedule.
        number: The trial's number.
        trials: Every other trial of the study, running ones included.
        n_low_results: Finished trials with a low-fidelity result.
        n_startup_trials: Low-fidelity results wanted before any trial trains fully.
    """
    if config.schedule == "fixed":
        position = number % config.round_length
        return HIGH if position >= config.round_length - config.high_per_round else LOW
    if n_low_results < n_startup_trials:
        return LOW
    decided = [t for t in trials if t.user_attrs.get(FIDELITY_ATTR) in (LOW, HIGH)]
    high = sum(planned_cost(t, config) for t in decided if not is_low_fidelity(t))
    low = sum(planned_cost(t, config) for t in decided if is_low_fidelity(t))
    # Give the next full training once low-fidelity spending has caught up with the share;
    # the first one too, so that it goes to an architecture the short runs found good.
    share_after = (high + 1.0) / (high + 1.0 + low)
    return HIGH if share_after <= config.high_cost_share + 1e-9 else LOW


def promotion_order(low_values: np.ndarray, predicted_full: np.ndarray | None) -> np.ndarray:
    """Architectures to train fully, best first, from their short run and the model's view.

    Each candidate's rank by its low-fidelity result and its rank by the objective head's
    predicted full result (the members' mean) are averaged. Neither alone is reliable: on
    NAS-Bench-201 the model ranked the full-training optimum of ImageNet16-120 better than its
    12-epoch result did (7th against 20th of 125 promising cells, 5 seeds), and worse on
    CIFAR-10 (23rd against 7th). The mean, not PI: PI, measured against a best full result the
    model under-predicts, ranked the most uncertain cells first, and on ImageNet16-120 (seed 0)
    30 promotions went to cells as poor as the 330th while the optimum, run short at trial 73,
    waited. Without a prediction (the head has not learnt enough full results yet) the short
    runs decide alone.
    """
    score = _unit_ranks(low_values)
    if predicted_full is not None:
        score = score + _unit_ranks(predicted_full)
    return np.argsort(-score, kind="stable")


def _unit_ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(1, len(values))


# ------------------------------------------------------------------------ the sampler's policy
class FidelityPolicy:
    """Every decision the sampler takes about fidelities, with the mono-fidelity answers.

    The sampler asks it which *level* a new trial trains at (``None`` in a mono-fidelity
    study), and, per proposal at that level: which head's acquisition picks the architecture,
    which acquisition, whether short runs may be promoted, and how many results the model has.

    Args:
        config: The multi-fidelity schedule; ``None`` for a mono-fidelity study.
        acquisition: The sampler's acquisition, used for full trainings.
    """

    def __init__(self, config: MultiFidelity | None, acquisition: str) -> None:
        self.config = config
        self._acquisition = acquisition

    @property
    def low_step(self) -> int | None:
        return None if self.config is None else self.config.low_step

    @property
    def head_weights(self) -> dict[str, float] | None:
        """Loss weights per head: full results count more than short runs."""
        return None if self.config is None else {OBJECTIVE: self.config.high_fidelity_weight}

    def n_results(self, trials: Sequence[FrozenTrial]) -> int:
        """Finished trials the model can learn the search target from."""
        if self.config is None:
            return len(usable_trials(trials))
        low_step = self.config.low_step
        return sum(
            1
            for t in trials
            if t.state.is_finished() and (is_usable(t) or low_fidelity_results(t, low_step))
        )

    def new_trial_attrs(
        self,
        number: int,
        read_others: Callable[[], Sequence[FrozenTrial]],
        n_startup_trials: int,
    ) -> dict[str, Any]:
        """The level and step budget of a new trial, as user attrs (empty: mono-fidelity).

        ``read_others`` reads every other trial from storage: only a multi-fidelity study
        pays for that read.
        """
        if self.config is None:
            return {}
        others = read_others()
        n_results = self.n_results(others)
        level = decide_level(self.config, number, others, n_results, n_startup_trials)
        return {FIDELITY_ATTR: level, BUDGET_ATTR: self.config.budget(level)}

    def finished_trial_attrs(self, trial: FrozenTrial, state: TrialState) -> dict[str, Any]:
        """What a finished trial cost, in full evaluations (empty: mono-fidelity)."""
        if self.config is None:
            return {}
        return {COST_ATTR: trial_cost(trial, state, self.config.full_step)}

    @staticmethod
    def level(trial: FrozenTrial) -> str | None:
        """The level ``new_trial_attrs`` gave the trial, ``None`` in a mono-fidelity study."""
        return trial.user_attrs.get(FIDELITY_ATTR)

    @staticmethod
    def reuse_pruned(level: str | None) -> bool:
        """A full training may repeat an architecture seen only at low fidelity: a promotion."""
        return level == HIGH

    def head(self, level: str | None, data: TrainingData) -> str:
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

    def acquisition(self, head: str) -> str:
        """Where the ensemble scores: short runs use ``MultiFidelity.low_fidelity_acquisition``,
        the rest the sampler's (the kernel has its own, ``Proposer``'s ``kernel_acquisition``)."""
        if head == LOW_FIDELITY and self.config is not None:
            return self.config.low_fidelity_acquisition
        return self._acquisition

    def promotes_only(self) -> bool:
        """Whether full trainings go to promoted short runs only (when there are any)."""
        return self.config is not None and self.config.schedule == "promotion"

    def promotable(
        self,
        encoder: SearchSpaceEncoder,
        direction: StudyDirection,
        trials: Sequence[FrozenTrial],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best architectures trained only at low fidelity so far, and their results.

        Rows are internal values; results are in the maximisation convention.

        Only the top share by low-fidelity result qualifies: a short run that went badly is
        strong evidence against a full training, whatever the model extrapolates.
        """
        assert self.config is not None
        low_step = self.config.low_step
        results = [
            (t, value_from_step(t, low_step))
            for t in trials
            if t.state == TrialState.PRUNED and t.params and not trained_fully(t)
        ]
        results = [(t, v) for t, v in results if v is not None]
        values = direction_sign(direction) * np.array([v for _, v in results], dtype=float)
        keep = max(_MIN_PROMOTABLE, int(np.ceil(_PROMOTABLE_SHARE * len(results))))
        best = np.argsort(-values, kind="stable")[:keep]
        return encoder.to_internal(results[i][0].params for i in best), values[best]

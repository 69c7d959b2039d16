"""How trials share one study: storage reads and writes, proposals, taken architectures.

Everything the sampler needs from Optuna beyond ``BaseSampler``'s arguments goes through here:
every attr key it writes, every use of Optuna's private APIs (Optuna 5 removed
``Trial.set_system_attr``; samplers write through ``study._storage`` as the built-in ones do),
and the protocol that keeps concurrent workers from training the same architecture:

1. each worker publishes the candidate it is about to return as a *proposal* (a system attr);
2. every other trial, finished, running or proposed, rules some architectures out
   (:func:`taken_architectures`);
3. :func:`claim` publishes the best free candidate and re-reads storage, moving on when another
   worker published the same one at the same moment.

Which architectures a trial rules out: the sampler returns a value for *every* parameter of the
union space, and the objective asks only some of them, depending on branches the sampler can
only guess without a ``search_space`` function. So a candidate is not compared with other
trials through its guessed activity mask but through what is certain:

* a **finished** trial asked exactly ``trial.params``. Define-by-run branching is a function of
  the values already suggested, so any row that agrees with those values makes the objective
  take the same path and ask the same parameters: it would repeat that trial, whatever else the
  row holds. That covers partial trials too (pruned or failed after their first ``suggest``).
* a **running** trial will ask at least what it has asked so far, plus the proposal it
  published. Of the proposal only the parameters that every fully-suggested trial used are
  certain to be asked; a conditional one counts once the trial has asked it.

Each trial thus contributes a *pattern* (parameter -> internal value) and a row is taken when it
agrees with some pattern on all of the pattern's parameters. The rows returned to Optuna are the
same full rows that were checked, so the check is exact for finished trials.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import json
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens.encoding import SearchSpaceEncoder

# User attrs (what optuna-dashboard shows): the sampler's explanation of each choice, and the
# multi-fidelity decision and cost of each trial.
ATTR_PREFIX = "deepens_"
SOURCE_ATTR = "deepens_source"
TRUST_RADIUS_ATTR = "deepens_trust_radius"
PREDICTED_MEAN_ATTR = "deepens_predicted_mean"
PREDICTED_STD_ATTR = "deepens_predicted_std"
ACQUISITION_ATTR = "deepens_acquisition"
ACQUISITION_FUNCTION_ATTR = "deepens_acquisition_function"
FIDELITY_ATTR = "deepens_fidelity"
BUDGET_ATTR = "deepens_budget"
COST_ATTR = "deepens_cost"
# Written by ``TrainingObjective``: why a trial failed, and the epoch a retry resumed from.
FAIL_REASON_ATTR = "deepens_fail_reason"
RESUMED_ATTR = "deepens_resumed_from_epoch"
# The fidelity levels written to ``FIDELITY_ATTR``.
LOW = "low"
HIGH = "high"
# System attrs: this package's proposals, and Optuna's own record of enqueued parameters.
PROPOSAL_KEY = "deepens:proposal"
_FIXED_PARAMS_KEY = "fixed_params"
_MAX_ATTR_LENGTH = 2045  # Optuna's own chunk size for system attrs (RDB column limits).
_MAX_PUBLISH_RETRIES = 3


# ------------------------------------------------------------------------ Optuna's internals
def snapshot(study: optuna.Study) -> list[FrozenTrial]:
    """The trials as of this ask (Optuna's per-trial cache): cheap, may be slightly stale."""
    return study._get_trials(deepcopy=False, use_cache=True)


def fresh_trials(study: optuna.Study) -> list[FrozenTrial]:
    """A fresh read of all trials (not the per-ask snapshot), to see other workers' news."""
    return study._storage.get_all_trials(study._study_id, deepcopy=False)


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """A running trial's stored record, system attrs included (``Trial`` hides them)."""
    return trial.study._storage.get_trial(trial._trial_id)


def trial_id(trial: FrozenTrial) -> int:
    """A trial's id in its storage: unlike ``number``, never shared with another study's."""
    return trial._trial_id


def is_multi_objective(study: optuna.Study) -> bool:
    return study._is_multi_objective()


def contains(distribution: BaseDistribution, internal: float) -> bool:
    """Whether an internal value lies in a numeric distribution (on its grid, within bounds)."""
    return bool(distribution._contains(internal))


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact hypervolume (WFG) of maximised ``points`` above ``reference``."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(-points, -reference))


def fixed_params(trial: FrozenTrial) -> dict[str, Any]:
    """Parameters fixed by ``study.enqueue_trial``: the objective will get these, whatever."""
    return trial.system_attrs.get(_FIXED_PARAMS_KEY, {})


# ------------------------------------------------------------------------------- proposals
def publish_proposal(study: optuna.Study, trial_id: int, proposal: Mapping[str, float]) -> None:
    """Store the internal values this trial is about to use, so other workers avoid them.

    The chunk count is written last: a retry that writes fewer chunks never leaves stale ones
    in what readers assemble.
    """
    text = json.dumps({k: v for k, v in proposal.items() if not math.isnan(v)})
    chunks = [text[i : i + _MAX_ATTR_LENGTH] for i in range(0, len(text), _MAX_ATTR_LENGTH)]
    for i, chunk in enumerate(chunks):
        study._storage.set_trial_system_attr(trial_id, f"{PROPOSAL_KEY}:{i}", chunk)
    study._storage.set_trial_system_attr(trial_id, f"{PROPOSAL_KEY}:n", len(chunks))


def read_proposal(trial: FrozenTrial) -> dict[str, float] | None:
    """The proposal another worker published for ``trial``, if any."""
    count = trial.system_attrs.get(f"{PROPOSAL_KEY}:n")
    if not isinstance(count, int):
        return None
    try:
        text = "".join(trial.system_attrs[f"{PROPOSAL_KEY}:{i}"] for i in range(count))
        decoded = json.loads(text)
    except (KeyError, TypeError, json.JSONDecodeError):
        return None  # Written by an interrupted worker: it is only a hint, so skip it.
    return {str(k): float(v) for k, v in decoded.items()} if isinstance(decoded, dict) else None


def set_user_attrs(study: optuna.Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    """User attrs are what optuna-dashboard shows: small scalars explaining a choice.

    Optuna hands the sampler the trial's own cached record, which ``Trial.user_attrs`` reads:
    updating it too shows the attrs to the objective (``fidelity(trial)``, the pruner, the
    user's code) without another storage read.
    """
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    trial.user_attrs.update(attrs)


# --------------------------------------------------------------------- taken architectures
Pattern = tuple[tuple[int, float], ...]  # (column, rounded internal value), sorted by column.
_DECIMALS = 9  # As SearchSpaceEncoder.keys.


class TakenArchitectures:
    """Patterns of other trials, matched against full candidate rows in one vectorised pass."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        groups: dict[tuple[int, ...], set[tuple[float, ...]]] = {}
        for pattern in patterns:
            if not pattern:  # A trial that asked nothing modelled rules nothing out.
                continue
            columns = tuple(column for column, _ in pattern)
            groups.setdefault(columns, set()).add(tuple(value for _, value in pattern))
        self._groups = [(np.array(columns), values) for columns, values in groups.items()]

    def __len__(self) -> int:
        return sum(len(values) for _, values in self._groups)

    def contains(self, rows: np.ndarray) -> np.ndarray:
        """For each full internal row (``NaN`` = no value), whether it repeats a pattern."""
        taken = np.zeros(len(rows), dtype=bool)
        for columns, values in self._groups:
            projected = np.round(rows[:, columns], _DECIMALS).tolist()
            taken |= np.fromiter((tuple(r) in values for r in projected), bool, len(rows))
        return taken


def params_pattern(
    encoder: SearchSpaceEncoder, params: Mapping[str, Any], *, internal: bool = False
) -> Pattern | None:
    """The pattern of a parameter dict (external values unless ``internal``).

    ``None`` when a value is not valid in the current space (a choice since removed): no
    candidate can repeat it.
    """
    pattern = []
    for name, value in params.items():
        column = encoder.index.get(name)
        if column is None:
            continue  # Not modelled (single-valued or unsupported): it cannot tell rows apart.
        number = float(value) if internal else encoder.value_to_internal(column, value)
        if math.isnan(number):
            return None
        pattern.append((column, round(number, _DECIMALS)))
    return tuple(sorted(pattern))


def is_fully_suggested(trial: FrozenTrial) -> bool:
    """Whether a trial's parameters are a whole architecture: it ran the objective to training.

    COMPLETE trials, and PRUNED ones that reported a value (a pruner stops a training, which
    starts after the architecture is built). A trial pruned or failed before reporting may have
    stopped between two ``suggest`` calls; a RUNNING one may still be between them.
    """
    if not trial.params:
        return False
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.PRUNED and bool(trial.intermediate_values)
    )


def fully_suggested(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_fully_suggested(t)]


class PatternCache:
    """Patterns of finished trials by encoding layout: a finished trial never changes."""

    def __init__(self) -> None:
        self._patterns: dict[tuple[int, int], Pattern | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_patterns": {}}  # Cheap to rebuild; not worth pickling.

    def finished(
        self, encoder: SearchSpaceEncoder, layout: int, trial: FrozenTrial
    ) -> Pattern | None:
        """``layout`` is ``hash(encoder.signature)``, computed once per batch of trials."""
        key = (layout, trial_id(trial))
        if key not in self._patterns:
            self._patterns[key] = params_pattern(encoder, trial.params)
        return self._patterns[key]


def taken_architectures(
    encoder: SearchSpaceEncoder,
    trials: Sequence[FrozenTrial],
    *,
    cache: PatternCache,
    reuse_pruned: bool = False,
    whole_proposals: bool = False,
) -> TakenArchitectures:
    """Everything finished, running or proposed among ``trials``.

    Of a running trial's proposal, only the parameters that every fully-suggested trial asked
    count before the trial asks them: those are certain to be asked.

    Args:
        reuse_pruned: Leave architectures that were only pruned at low fidelity available (a
            full training may promote them).
        whole_proposals: Count every entry of running trials' proposals (their guessed
            activity): less safe, for when the careful rule leaves nothing free at the end of
            a small space.
    """
    patterns: list[Pattern] = []
    certain = np.ones(encoder.n_params, dtype=bool)
    running: list[FrozenTrial] = []
    layout = hash(encoder.signature)
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            running.append(t)
            continue
        pattern = cache.finished(encoder, layout, t)
        if pattern is None:
            continue
        if is_fully_suggested(t):
            asked = np.zeros(encoder.n_params, dtype=bool)
            asked[[column for column, _ in pattern]] = True
            certain &= asked
        if not (reuse_pruned and t.state == TrialState.PRUNED and not trained_fully(t)):
            patterns.append(pattern)
    if whole_proposals:
        certain = np.ones(encoder.n_params, dtype=bool)
    for t in running:
        pattern = _running_pattern(encoder, t, certain)
        if pattern is not None:
            patterns.append(pattern)
    return TakenArchitectures(patterns)


def _running_pattern(
    encoder: SearchSpaceEncoder, trial: FrozenTrial, certain: np.ndarray
) -> Pattern | None:
    proposal = read_proposal(trial) or {}
    if not proposal and not trial.params:
        # Nothing asked or claimed yet: a just-created trial, or one waiting in the queue with
        # some fixed parameters (enqueue_trial), whose rest is still open.
        return None
    entries = {
        name: value
        for name, value in proposal.items()
        if name in encoder.index and certain[encoder.index[name]]
    }
    asked = params_pattern(encoder, {**fixed_params(trial), **trial.params})
    if asked is None:
        return None
    merged = dict(params_pattern(encoder, entries, internal=True) or ())
    merged.update(dict(asked))
    return tuple(sorted(merged.items()))


def trained_fully(trial: FrozenTrial) -> bool:
    """A full training, finished or stopped by a pruner: never worth promoting again."""
    return trial.user_attrs.get(FIDELITY_ATTR) == HIGH


# ----------------------------------------------------------------------------------- claim
def claim(
    study: optuna.Study,
    trial: FrozenTrial,
    encoder: SearchSpaceEncoder,
    values: np.ndarray,
    active: np.ndarray,
    order: np.ndarray,
    rng: np.random.Generator,
    *,
    cache: PatternCache,
    reuse_pruned: bool = False,
) -> int:
    """Publish the best candidate no other trial holds; re-check after publishing.

    Two workers sampling at the same moment can both pick the same architecture. Each reads
    the other trials right before and right after publishing its own; on a clash it moves on
    to a random one of its next-best candidates.

    Args:
        values: Candidates' full internal rows (every parameter valued).
        active: The parameters each candidate is expected to ask: what is published.
        order: Candidate indices, best first.

    Returns:
        The index of the claimed candidate (the best one when every candidate is held).
    """

    def held_by_others(rows: np.ndarray) -> np.ndarray:
        # Not only RUNNING trials: another worker may have published, evaluated and finished
        # an architecture since this trial's snapshot was taken.
        others = [t for t in fresh_trials(study) if t.number != trial.number]
        taken = taken_architectures(encoder, others, cache=cache, reuse_pruned=reuse_pruned)
        return taken.contains(rows)

    position = 0
    choice = int(order[0])
    for attempt in range(_MAX_PUBLISH_RETRIES + 1):
        held = held_by_others(values)
        remaining = [int(i) for i in order[position:] if not held[i]]
        if not remaining:
            return choice
        if attempt == 0:
            choice = remaining[0]
        else:
            choice = remaining[int(rng.integers(min(len(remaining), 4 * attempt)))]
        position = int(np.flatnonzero(order == choice)[0])
        proposal = dict(zip(encoder.names, np.where(active[choice], values[choice], np.nan)))
        publish_proposal(study, trial_id(trial), proposal)
        if not held_by_others(values[[choice]])[0]:
            return choice
    return choice

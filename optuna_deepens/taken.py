"""Which architectures a candidate must not repeat, whatever the other trials look like.

The sampler returns a value for *every* parameter of the union space, and the objective asks
only some of them: the architecture actually trained is the returned row restricted to the
parameters the objective asks. Which ones that is depends on branches the sampler can only guess
without a ``search_space`` function. So a candidate is not compared with other trials through
its guessed activity mask but through what is certain:

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
import math
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens import coordination
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.multi_fidelity import FIDELITY_ATTR
from optuna_deepens.multi_fidelity import HIGH

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
        key = (layout, trial._trial_id)
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
    proposal = coordination.read_proposal(trial) or {}
    if not proposal and not trial.params:
        # Nothing asked or claimed yet: a just-created trial, or one waiting in the queue with
        # some fixed parameters (enqueue_trial), whose rest is still open.
        return None
    entries = {
        name: value
        for name, value in proposal.items()
        if name in encoder.index and certain[encoder.index[name]]
    }
    asked = params_pattern(encoder, {**trial.system_attrs.get("fixed_params", {}), **trial.params})
    if asked is None:
        return None
    merged = dict(params_pattern(encoder, entries, internal=True) or ())
    merged.update(dict(asked))
    return tuple(sorted(merged.items()))


def trained_fully(trial: FrozenTrial) -> bool:
    """A full training, finished or stopped by a pruner: never worth promoting again."""
    return trial.user_attrs.get(FIDELITY_ATTR) == HIGH

"""The few places where the sampler writes to Optuna storage, behind one small interface.

Optuna 5 removed ``Trial.set_system_attr``; samplers write through ``study._storage`` as the
built-in samplers do. Keeping every such call here means one file to fix if that API moves.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial

PROPOSAL_KEY = "deepens:proposal"
_MAX_ATTR_LENGTH = 2045  # Optuna's own chunk size for system attrs (RDB column limits).


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


def fresh_trials(study: optuna.Study) -> list[FrozenTrial]:
    """A fresh read of all trials (not the per-ask snapshot), to see other workers' news."""
    return study._storage.get_all_trials(study._study_id, deepcopy=False)


def set_user_attrs(study: optuna.Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    """User attrs are what optuna-dashboard shows: small scalars explaining a choice.

    Optuna hands the sampler the trial's own cached record, which ``Trial.user_attrs`` reads:
    updating it too shows the attrs to the objective (``fidelity(trial)``, the pruner, the
    user's code) without another storage read.
    """
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    trial.user_attrs.update(attrs)


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """A running trial's stored record, system attrs included (``Trial`` hides them)."""
    return trial.study._storage.get_trial(trial._trial_id)

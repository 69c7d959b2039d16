"""Which parameters a candidate activates, learned from the trials seen so far.

Without a ``search_space`` function the sampler cannot replay the user's branching, yet a
candidate whose mutation switches ``block`` from ``"conv"`` to ``"attn"`` should be scored with
the attention parameters active, not with its parent's convolution ones. Define-by-run spaces
branch on a categorical or integer value, so for every conditional parameter this module looks
for a *switch*: a parameter whose observed values alone determine, without exception, whether
the conditional one was used (``heads`` is used iff ``block == "attn"``; ``channels_2`` iff
``n_layers >= 3``). Candidates then get their activity from those rules, applied outermost first
for nested branches; where no rule is known, the caller's guess (the parent's mask) stands.
"""

from __future__ import annotations

import numpy as np
from optuna.distributions import FloatDistribution

from optuna_deepens.encoding import SearchSpaceEncoder

_MAX_NESTING = 4


class ActivityRules:
    """Switch rules mined from observed internal rows (``NaN`` = inactive).

    Args:
        encoder: The union space.
        observed: ``[n, n_params]`` internal rows of trials that ran the objective.
    """

    def __init__(self, encoder: SearchSpaceEncoder, observed: np.ndarray) -> None:
        self._rules: dict[int, tuple[int, dict[float, bool]]] = {}
        if len(observed) == 0:
            return
        masks = ~np.isnan(observed)
        switches = [
            j
            for j, distribution in enumerate(encoder.distributions)
            if not isinstance(distribution, FloatDistribution)
        ]
        for target in np.flatnonzero(masks.any(axis=0) & ~masks.all(axis=0)):
            rules = [
                (int(switch), table)
                for switch in switches
                if (table := _pure_rule(observed, masks, int(switch), int(target))) is not None
            ]
            if rules:  # The switch with the fewest values generalises to unseen candidates.
                self._rules[int(target)] = min(rules, key=lambda rule: len(rule[1]))

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, values: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """Activity masks for full candidate ``values``, overriding ``guess`` where a rule knows.

        A switch value never observed leaves the guess in place for that candidate.
        """
        active = guess.copy()
        for _ in range(_MAX_NESTING):  # Inner branches settle once outer ones have.
            for target, (switch, table) in self._rules.items():
                known, outcome = _lookup(table, values[:, switch])
                ruled = active[:, switch] & outcome
                active[:, target] = np.where(known | ~active[:, switch], ruled, guess[:, target])
        return active


def _lookup(table: dict[float, bool], column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``(value in table, table.get(value, False))`` over a column."""
    keys = np.array(sorted(table))
    outcomes = np.array([table[k] for k in keys])
    position = np.clip(np.searchsorted(keys, column), 0, len(keys) - 1)
    known = keys[position] == column
    return known, known & outcomes[position]


def _pure_rule(
    observed: np.ndarray, masks: np.ndarray, switch: int, target: int
) -> dict[float, bool] | None:
    """``{switch value: target active}`` if it explains every observation, else ``None``."""
    if switch == target or np.any(masks[:, target] & ~masks[:, switch]):
        return None  # The target was used without the switch: not its parent.
    rows = masks[:, switch]
    if not rows.any():
        return None
    table: dict[float, bool] = {}
    for value, used in zip(observed[rows, switch], masks[rows, target]):
        if table.setdefault(float(value), bool(used)) != bool(used):
            return None
    return table

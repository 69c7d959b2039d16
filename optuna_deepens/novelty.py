"""Exploration that counts structures: an untried categorical structure goes before a new set of
numbers for one already tried, unless every member says otherwise.

"Never the same architecture twice" holds for a width of 64.1 after one of 64.0, so in a mixed
space the acquisition can keep choosing new numbers for the few structures it knows (issue 18:
a median of 33.5 of 50 guided trials on one structure of 182). A structure is the choice of
every active categorical parameter. When the acquisition's first choice is a structure already
evaluated, the best candidate of an untried structure takes its place, unless every member of
the ensemble predicts the refinement better: the model must be sure, not just hopeful, before a
trial goes to numbers alone. In an all-categorical space every free candidate is untried, and
in an all-numeric one there is no structure: the rule changes nothing there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Sequence

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.local_search import numeric_columns
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import TrainingData

# User attr of a model-guided trial in a space with numbers: whether it tried a structure no
# earlier trial had (else it only set new numbers for a known one).
NEW_STRUCTURE_ATTR = "deepens_new_structure"
# Each branch (set of asked parameters) is given at least this part of its even share of the
# finished trials: with three branches, a ninth of them each (see branch_floor).
BRANCH_FLOOR = 1 / 3


def structures(encoder: SearchSpaceEncoder, rows: np.ndarray) -> list[Hashable]:
    """The active categorical choices of each internal row (``NaN`` = inactive)."""
    columns = [
        j for j, d in enumerate(encoder.distributions) if isinstance(d, CategoricalDistribution)
    ]
    names = encoder.names
    return [
        tuple((names[j], float(row[j])) for j in columns if not np.isnan(row[j])) for row in rows
    ]


def tried(
    encoder: SearchSpaceEncoder, values: np.ndarray, trials: Sequence[FrozenTrial]
) -> np.ndarray:
    """Whether each candidate's structure is that of a trial that has asked for parameters.

    ``values`` are full rows (every parameter valued: what the objective will be given). A row
    matches a trial when its values make every categorical choice the trial made, whatever the
    candidate's guessed activity: without ``search_space=`` that activity is learnt and may
    list a branch's parameters the objective will not ask for, or miss one it will (both seen
    on a three-branch space), while branching follows the values, as in the check that no
    architecture is trained twice.
    """
    known = set(structures(encoder, encoder.to_internal(t.params for t in trials if t.params)))
    matched = np.zeros(len(values), dtype=bool)
    names = encoder.names
    for structure in known:
        columns = [names.index(name) for name, _ in structure]
        choices = np.array([value for _, value in structure])
        matched |= (values[:, columns] == choices).all(axis=1)
    return matched


def prefer_untried(
    order: np.ndarray, is_tried: np.ndarray, members: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``order`` with the best untried structure first, unless every member predicts the first
    choice (a tried structure) better than it.

    Args:
        order: Candidate indices, best first.
        is_tried: Whether each candidate's structure is a trial's (:func:`tried`).
        members: Candidate indices to the members' predictions ``[n_members, len(indices)]``,
            larger is better; asked for two candidates at most (an acquisition that reads a
            GP's moments computes no draws for the others).
    """
    if not len(order) or not is_tried[order[0]]:
        return order
    untried = order[~is_tried[order]]
    if not len(untried):
        return order
    first, challenger = int(order[0]), int(untried[0])
    predicted = members(np.array([first, challenger]))
    if (predicted[:, 0] > predicted[:, 1]).all():
        return order
    return np.concatenate([[challenger], order[order != challenger]])


def first_of_each(order: np.ndarray, keys: Sequence[Hashable], n: int) -> np.ndarray:
    """The first ``n`` indices of ``order`` with distinct ``keys``; where fewer keys exist,
    the next indices of ``order`` fill the ``n`` (a space of numbers alone has one key)."""
    seen: set[Hashable] = set()
    chosen = []
    for i in order:
        if keys[i] not in seen:
            seen.add(keys[i])
            chosen.append(int(i))
            if len(chosen) == n:
                break
    if len(chosen) < n:
        taken = set(chosen)
        chosen += [int(i) for i in order if int(i) not in taken][: n - len(chosen)]
    return np.array(chosen, dtype=int)


def branch_floor(
    order: np.ndarray,
    patterns: Sequence[bytes],
    finished: Sequence[bytes],
    *,
    exact: bool,
) -> np.ndarray:
    """``order`` with the candidates of the least-tried branch first while it holds fewer than
    ``BRANCH_FLOOR`` of its even share of the ``finished`` trials; else ``order`` unchanged.

    A branch is a set of asked parameters (``patterns``: one per candidate, ``finished``: one
    per finished trial, as the bytes of a boolean mask). A GP's log EI judges a branch by its
    first few trials, and a branch whose 2-3 random startup trials drew bad numbers was never
    tried again: 5 of 20 runs of tests/mixed.py stayed in a branch whose best is 1.5 below the
    optimum. The floor costs at most ``BRANCH_FLOOR`` of its share per branch really worse.
    It holds only while a share is at least one trial: a space whose numbers open layers has
    a branch per depth, too many to floor. With learnt activity (``exact=False``) only the
    branches some trial asked count, since a guessed mask no trial has would stay at zero.
    """
    kinds = sorted(set(patterns) if exact else set(patterns) & set(finished))
    if len(kinds) < 2:
        return order
    counts = Counter(finished)
    least = min(kinds, key=lambda kind: counts[kind])
    share = BRANCH_FLOOR * len(finished) / len(kinds)
    if share < 1 or counts[least] >= share:
        return order
    inside = np.array([patterns[i] == least for i in order], dtype=bool)
    return np.concatenate([order[inside], order[~inside]])


def borrow_numbers(
    encoder: SearchSpaceEncoder, values: np.ndarray, active: np.ndarray, data: TrainingData
) -> np.ndarray:
    """``values`` (full rows of untried structures) with the numbers of the best result of
    their branch (the same asked parameters), or where the branch has none, of the best result.

    An untried structure's numbers are random draws, or the bounds of their range where its
    acquisition climbed, since far from every result the GP's spread is largest there: a
    quarter of the new structures of tests/mixed.py were tried at a bound of the width, scored
    poorly, and the model learnt that the structure did. With the branch's best numbers the
    one trial of a new structure says how good the structure is, and the structures are
    compared at the numbers they would be tried with.
    """
    observed = data.targets[OBJECTIVE][: len(data.observed)]  # Larger is better.
    finite = np.isfinite(observed)
    rows, observed = data.internal[: len(data.observed)][finite], observed[finite]
    if not len(rows):
        return values
    numeric = np.zeros(encoder.n_params, dtype=bool)
    numeric[numeric_columns(encoder)] = True
    asked = ~np.isnan(rows)
    borrowed = values.copy()
    for pattern in np.unique(active, axis=0):
        same = (asked == pattern).all(axis=1)
        pool = np.flatnonzero(same) if same.any() else np.arange(len(rows))
        donor = rows[pool[int(np.argmax(observed[pool]))]]
        columns = numeric & pattern & ~np.isnan(donor)
        members = (active == pattern).all(axis=1)
        borrowed[np.ix_(members, columns)] = donor[columns]
    return borrowed

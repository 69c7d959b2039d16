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

from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Sequence

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from optuna_deepens.encoding import SearchSpaceEncoder

# User attr of a model-guided trial in a space with numbers: whether it tried a structure no
# earlier trial had (else it only set new numbers for a known one).
NEW_STRUCTURE_ATTR = "deepens_new_structure"


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

"""Numeric local optimisation of the acquisition, and the rule that counts structures."""

from __future__ import annotations

import mixed  # tests/mixed.py: the three-branch space of issue 18
import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest
import torch

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.local_search import climb
from optuna_deepens.local_search import polish
from optuna_deepens.novelty import NEW_STRUCTURE_ATTR
from optuna_deepens.novelty import borrow_numbers
from optuna_deepens.novelty import branch_floor
from optuna_deepens.novelty import first_of_each
from optuna_deepens.novelty import prefer_untried
from optuna_deepens.novelty import structures
from optuna_deepens.novelty import tried
from optuna_deepens.training_data import build_training_data

CHOICES = {name for branch in mixed.SPACES.values() for name in branch} | {"branch"}

SPACE = {
    "block": CategoricalDistribution(["conv", "attn"]),
    "width": FloatDistribution(8.0, 512.0, log=True),
    "depth": IntDistribution(1, 8),
}


def _columns(encoder: SearchSpaceEncoder) -> tuple[int, int, int]:
    return tuple(encoder.names.index(n) for n in ("block", "width", "depth"))  # type: ignore


def _acquisition(encoder: SearchSpaceEncoder):
    """Best at width 64 and depth 5 (or depth 2 for attn); an inactive depth costs nothing."""
    b, w, d = _columns(encoder)

    def value(rows: np.ndarray) -> np.ndarray:
        target_depth = np.where(rows[:, b] == 1, 2.0, 5.0)
        depth_cost = np.nan_to_num((rows[:, d] - target_depth) ** 2, nan=0.0)
        return -((np.log2(rows[:, w]) - 6.0) ** 2) - 0.1 * depth_cost

    return value


@pytest.mark.parametrize("seed", range(5))
def test_climb_moves_only_active_numbers_and_never_downhill(seed: int) -> None:
    encoder = SearchSpaceEncoder(SPACE)
    b, w, d = _columns(encoder)
    starts = np.zeros((3, 3))
    starts[:, [b, w, d]] = [[0.0, 9.0, 1.0], [1.0, 400.0, 8.0], [1.0, 300.0, 7.0]]
    active = np.ones((3, 3), dtype=bool)
    active[2, d] = False
    acquisition = _acquisition(encoder)
    rng = np.random.default_rng(seed)
    climbed = climb(encoder, starts, active, acquisition, rng)
    assert np.array_equal(climbed[:, b], starts[:, b])  # Structures stay.
    assert climbed[2, d] == 7.0  # An inactive number stays.
    before = acquisition(np.where(active, starts, np.nan))
    after = acquisition(np.where(active, climbed, np.nan))
    assert (after >= before).all()
    # From far away (width 9 or 400, depth 1 or 8), the rounds end at width 64 and the depth
    # each block wants (the depth counts for little beside the width: coordinate moves find it).
    assert (np.abs(np.log2(climbed[:, w]) - 6.0) < 0.1).all()
    assert climbed[0, d] == 5.0 and climbed[1, d] == 2.0


def _feature_acquisition(encoder: SearchSpaceEncoder):
    """The same optimum as ``_acquisition`` (width 64), on features and differentiable: the
    scaled width's column, log-scale over [8, 512], puts 64 at exactly 0.5."""
    column = int(encoder.offsets[encoder.names.index("width")]) + 1

    def value(features: torch.Tensor) -> torch.Tensor:
        return -((features[:, column] - 0.5) ** 2)

    return value


def test_polish_ends_on_the_optimum_of_a_smooth_acquisition() -> None:
    """The climb ends within a tenth of an octave; the gradient ends on the optimum itself,
    moving only active floats (not ints, not inactive ones) and never downhill."""
    encoder = SearchSpaceEncoder(SPACE)
    b, w, d = _columns(encoder)
    rows = np.zeros((3, 3))
    rows[:, [b, w, d]] = [[0.0, 60.0, 3.0], [1.0, 500.0, 8.0], [1.0, 9.0, 7.0]]
    active = np.ones((3, 3), dtype=bool)
    active[2, w] = False  # Its width is not asked: it must stay.
    acquisition = _feature_acquisition(encoder)
    seen: list[torch.Tensor] = []
    polished = polish(encoder, rows, active, lambda f: seen.append(f.detach()) or acquisition(f))
    # The acquisition reads the rows as the objective would: an inactive width is encoded as
    # inactive (its activity flag 0), not as the value the full row holds.
    assert all((f[2, encoder.offsets[w] : encoder.offsets[w] + 2] == 0).all() for f in seen)
    assert np.abs(np.log2(polished[:2, w]) - 6.0).max() < 1e-3
    assert polished[2, w] == 9.0
    assert np.array_equal(polished[:, [b, d]], rows[:, [b, d]])


def test_polish_keeps_rows_it_cannot_improve_and_spaces_without_floats() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    b, w, d = _columns(encoder)
    rows = np.zeros((1, 3))
    rows[0, [b, w, d]] = [0.0, 64.0, 3.0]
    at_optimum = polish(
        encoder, rows, np.ones_like(rows, dtype=bool), _feature_acquisition(encoder)
    )
    assert np.array_equal(at_optimum, rows)
    ints = SearchSpaceEncoder({"depth": IntDistribution(1, 8)})
    out = polish(ints, np.array([[3.0]]), np.ones((1, 1), dtype=bool), lambda f: f[:, 1])
    assert np.array_equal(out, [[3.0]])


def test_climb_leaves_an_all_categorical_space_alone() -> None:
    encoder = SearchSpaceEncoder({"op": CategoricalDistribution(["a", "b", "c"])})
    starts = np.array([[0.0], [2.0]])
    out = climb(encoder, starts, np.ones_like(starts, dtype=bool), lambda r: r[:, 0], None)
    assert out is starts


def test_an_untried_structure_goes_first_unless_every_member_prefers_the_refinement() -> None:
    is_tried = np.array([True, False, True, False])
    order = np.array([0, 2, 3, 1])
    members = np.array([[3.0, 1.0, 2.0, 2.5], [3.0, 1.0, 2.0, 3.5]])  # Split on 0 vs 3.
    asked = []

    def at(predictions: np.ndarray):
        return lambda i: asked.append(list(i)) or predictions[:, i]

    assert prefer_untried(order, is_tried, at(members)).tolist() == [3, 0, 2, 1]
    assert asked == [[0, 3]]  # The first choice and the best untried one only.
    unanimous = np.array([[3.0, 1.0, 2.0, 2.5], [3.0, 1.0, 2.0, 2.9]])
    assert prefer_untried(order, is_tried, at(unanimous)).tolist() == order.tolist()
    for nothing_to_prefer in (np.zeros(4, dtype=bool), np.ones(4, dtype=bool)):
        assert prefer_untried(order, nothing_to_prefer, at(members)).tolist() == order.tolist()


def test_a_structure_is_tried_when_a_trial_made_the_same_choices() -> None:
    """A candidate with extra active choices (learnt activity can list a branch the objective
    would not ask for) matches the trial whose choices it repeats."""
    encoder = SearchSpaceEncoder(
        {
            "branch": CategoricalDistribution(["a", "b"]),
            "a_op": CategoricalDistribution(["x", "y"]),
            "b_op": CategoricalDistribution(["x", "y"]),
            "width": FloatDistribution(1.0, 10.0),
        }
    )
    trial = optuna.trial.create_trial(
        params={"branch": "a", "a_op": "y", "width": 3.0},
        distributions={
            n: encoder.distributions[encoder.names.index(n)] for n in ("branch", "a_op", "width")
        },
        value=1.0,
    )
    rows = encoder.to_internal(
        [
            {"branch": "a", "a_op": "y", "width": 7.0},  # Other numbers: tried.
            {"branch": "a", "a_op": "y", "b_op": "x", "width": 3.0},  # Extra choice: tried.
            {"branch": "a", "a_op": "x", "width": 3.0},  # Another choice: new.
            {"branch": "b", "b_op": "y", "width": 3.0},  # Another branch: new.
        ]
    )
    assert tried(encoder, rows, [trial]).tolist() == [True, True, False, False]
    assert not tried(encoder, rows, []).any()


def test_structures_are_the_active_categorical_choices() -> None:
    encoder = SearchSpaceEncoder(SPACE)
    b, w, d = _columns(encoder)
    rows = np.zeros((3, 3))
    rows[:, [b, w, d]] = [[0.0, 64.0, 3.0], [0.0, 128.0, np.nan], [1.0, 64.0, 3.0]]
    keys = structures(encoder, rows)
    assert keys[0] == keys[1] != keys[2]
    assert first_of_each(np.array([1, 0, 2]), keys, 2).tolist() == [1, 2]
    # Fewer structures than starts (a space of numbers alone has one): the next best fill in,
    # or a pure numeric space would climb from its single best candidate only.
    assert first_of_each(np.array([1, 0, 2]), keys, 3).tolist() == [1, 2, 0]
    assert first_of_each(np.array([2, 0, 1]), ["one"] * 3, 2).tolist() == [2, 0]


def test_guided_trials_of_a_mixed_space_say_whether_they_tried_a_new_structure() -> None:
    """The attr is the truth (a structure no earlier trial made), with and without
    search_space= (learnt activity may add a branch's parameters the objective never asks)."""
    for options, n_trials in (({}, 20), ({"search_space": mixed.suggest}, 12)):
        # Seed 3: without search_space= the learnt activity of trial 8 misses a parameter.
        sampler = DeepEnsembleSampler(seed=3, n_startup_trials=8, **options)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(mixed.objective, n_trials=n_trials)
        seen: set = set()
        flags = []
        for t in study.trials:
            structure = tuple(sorted((k, v) for k, v in t.params.items() if k in CHOICES))
            if t.user_attrs.get("deepens_source") == "model":
                flags.append(t.user_attrs[NEW_STRUCTURE_ATTR])
                assert flags[-1] == (structure not in seen), t.number
            seen.add(structure)
        assert len(flags) == n_trials - 8 and any(flags)


def test_the_least_tried_branch_goes_first_until_it_holds_its_floor() -> None:
    a, b, c = b"a", b"b", b"c"
    patterns = [a, b, a, c, b]
    order = np.array([0, 1, 2, 3, 4])

    def floor(finished: list[bytes], candidates=patterns, exact: bool = True) -> list[int]:
        return branch_floor(order, candidates, finished, exact=exact).tolist()

    # 12 finished trials, 3 branches: the floor is a third of 4 each; c has 1, so c first.
    assert floor([a] * 8 + [b] * 3 + [c]) == [3, 0, 1, 2, 4]
    # c reaches 4 / 3 trials: the order stays; a branch no candidate has does not count.
    assert floor([a] * 8 + [b] * 2 + [c] * 2) == [0, 1, 2, 3, 4]
    assert floor([a] * 8 + [b] * 3 + [c], candidates=[a] * 5) == [0, 1, 2, 3, 4]
    # A branch without a finished trial (the first guided trial after a lopsided startup)...
    assert floor([a] * 5 + [b] * 5) == [3, 0, 1, 2, 4]
    # ...unless the activity is learnt: a mask no trial asked (c) is a guess, not a branch.
    assert floor([a] * 10 + [b]) == [3, 0, 1, 2, 4]
    assert floor([a] * 10 + [b], exact=False) == [1, 4, 0, 2, 3]
    assert floor([a] * 8 + [b] * 3, exact=False) == [0, 1, 2, 3, 4]
    # A share under one trial (many branches, few trials: a depth that opens layers): no floor.
    assert floor([a] * 7 + [b], candidates=[a, b, b"c", b"d", b"e"]) == [0, 1, 2, 3, 4]


def test_an_untried_structure_borrows_its_branch_best_numbers() -> None:
    encoder = SearchSpaceEncoder(SPACE | {"heads": IntDistribution(1, 8)})
    b, w, d = _columns(encoder)
    h = encoder.names.index("heads")
    distributions = dict(zip(encoder.names, encoder.distributions))

    def trial(value: float | None, **params) -> optuna.trial.FrozenTrial:
        used = {n: distributions[n] for n in params}
        if value is None:
            state = optuna.trial.TrialState.FAIL
            return optuna.trial.create_trial(params=params, distributions=used, state=state)
        return optuna.trial.create_trial(params=params, distributions=used, value=value)

    trials = [
        trial(1.0, block="conv", width=16.0, depth=2),
        trial(3.0, block="conv", width=64.0, depth=5),  # conv's best
        trial(5.0, block="attn", width=256.0, heads=4),  # the best overall
        trial(None, block="conv", width=8.0, depth=8),  # failed: no value, never a donor
    ]
    data = build_training_data(trials, encoder, optuna.study.StudyDirection.MAXIMIZE)
    values = np.zeros((3, 4))
    values[:, [b, w, d, h]] = [[0.0, 9.0, 1.0, 1.0], [1.0, 9.0, 1.0, 1.0], [1.0, 9.0, 7.0, 1.0]]
    active = np.zeros((3, 4), dtype=bool)
    active[0, [b, w, d]] = True  # conv: its best conv trial's width and depth
    active[1, [b, w, h]] = True  # attn: the attn trial's width and heads
    active[2, [b, w, d, h]] = True  # a branch never tried: the best trial's numbers it has
    borrowed = borrow_numbers(encoder, values, active, data)
    assert borrowed[0, [w, d]].tolist() == [64.0, 5.0]
    assert borrowed[1, [w, h]].tolist() == [256.0, 4.0]
    assert borrowed[2, [w, d, h]].tolist() == [256.0, 7.0, 4.0]  # No depth in the donor.
    assert np.array_equal(borrowed[:, b], values[:, b])  # Choices stay.
    assert borrowed[0, h] == values[0, h]  # Inactive numbers stay.
    minimised = build_training_data(trials, encoder, optuna.study.StudyDirection.MINIMIZE)
    assert borrow_numbers(encoder, values, active, minimised)[0, [w, d]].tolist() == [16.0, 2.0]


@pytest.mark.parametrize("with_search_space", [False, True])
def test_every_branch_keeps_its_floor_after_a_lopsided_startup(with_search_space: bool) -> None:
    """Seed 2's startup puts 7-8 of 10 trials in attn and one in cell, the optimum's branch.
    Before the floor, 36 trials left cell at 1 without search_space= and conv at 3 with it
    (log EI judged those branches by their one or two trials); the floor keeps each branch at
    36 / 9 = 4 or more, whatever the trajectory."""
    options = {"search_space": mixed.suggest} if with_search_space else {}
    study = optuna.create_study(
        direction="maximize", sampler=DeepEnsembleSampler(seed=2, **options)
    )
    study.optimize(mixed.objective, n_trials=36)
    counts = {branch: 0 for branch in mixed.BRANCHES}
    for trial in study.trials:
        counts[trial.params["branch"]] += 1
    assert min(counts.values()) >= 36 // 9, counts

import math

import numpy as np
import pytest
import torch

from optuna_deepens.acquisition import ACQUISITIONS
from optuna_deepens.acquisition import score


def test_pi_orders_candidates_that_six_members_would_tie() -> None:
    rng = np.random.default_rng(0)
    # Every candidate is below the best for all six members: Monte-Carlo PI would be 0 for all.
    predictions = rng.normal(0.0, 1.0, size=(6, 1000)) - 10.0
    scores = score("pi", predictions, best=0.0, rng=rng)
    assert len(np.unique(scores.value)) == 1000
    assert np.all(np.isfinite(scores.value))
    best = scores.order[0]
    z = (scores.mean - 0.0) / predictions.std(axis=0)
    assert best == int(np.argmax(z))


def test_ties_are_broken_by_the_mean() -> None:
    predictions = np.array([[5.0, 7.0, 6.0]] * 6)  # No spread: all certain to improve.
    scores = score("pi", predictions, best=0.0, rng=np.random.default_rng(0))
    assert list(scores.order) == [1, 2, 0]


@pytest.mark.parametrize("name", ["pi", "ei", "ucb"])
def test_higher_mean_with_same_spread_wins(name: str) -> None:
    base = np.random.default_rng(1).normal(0, 1, size=(6, 1))
    predictions = np.hstack([base, base + 1.0])
    scores = score(name, predictions, best=0.5, rng=np.random.default_rng(0))
    assert scores.order[0] == 1


def test_thompson_sampling_follows_one_member() -> None:
    predictions = np.array([[0.0, 1.0], [1.0, 0.0]])
    picks = {
        int(score("ts", predictions, 0.0, np.random.default_rng(s)).order[0]) for s in range(20)
    }
    assert picks == {0, 1}


def test_unknown_acquisition_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        score("kg", np.zeros((2, 3)), 0.0, np.random.default_rng(0))


def _members(mean: list[float], spread: list[float]) -> np.ndarray:
    """Six members whose mean and (population) spread are exactly ``mean`` and ``spread``."""
    signs = np.array([1.0, -1.0] * 3)[:, None]
    return np.array(mean)[None, :] + signs * np.array(spread)[None, :]


def test_ucb_follows_the_mean_where_pi_chases_spread_far_below_the_best() -> None:
    # The model's best candidate (0) against an uncertain mediocre one (1), both far below the
    # observed best: the situation of a 12-epoch search after 100 short runs on NAS-Bench-201.
    predictions = _members([1.3, 0.5], [0.15, 0.5])
    rng = np.random.default_rng(0)
    assert score("pi", predictions, best=2.9, rng=rng).order[0] == 1
    assert score("ei", predictions, best=2.9, rng=rng).order[0] == 1
    assert score("ucb", predictions, best=2.9, rng=rng).order[0] == 0
    # UCB still explores: much more spread for a slightly lower mean wins.
    assert score("ucb", _members([1.3, 1.2], [0.15, 0.5]), best=2.9, rng=rng).order[0] == 1


def test_log_ei_keeps_candidates_ordered_where_linear_ei_is_exactly_zero() -> None:
    # Far below the best (z from -40 to -60) EI underflows to 0.0 on a linear scale, so every
    # candidate would tie; in log space the one closer to the best still wins.
    spread = np.array([0.5, 0.5, 0.5])
    predictions = _members([-20.0, -25.0, -30.0], list(spread))
    scores = score("ei", predictions, best=0.0, rng=np.random.default_rng(0))
    assert np.all(np.isfinite(scores.value))
    assert scores.value[0] > scores.value[1] > scores.value[2]
    assert list(scores.order) == [0, 1, 2]


def test_log_ei_matches_ei_where_ei_is_representable() -> None:
    mean = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    spread = np.array([0.3, 1.0, 0.2, 2.0, 0.1])
    scores = score(
        "ei", _members(list(mean), list(spread)), best=0.2, rng=np.random.default_rng(0)
    )
    z = (mean - 0.2) / spread
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in z])
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    expected = spread * (z * cdf + pdf)
    np.testing.assert_allclose(np.exp(scores.value), expected, rtol=1e-10)


def test_exact_moments_replace_the_members_statistics() -> None:
    members = _members([1.0, 0.0], [0.1, 0.1])
    rng = np.random.default_rng(0)
    by_members = score("ei", members, best=0.5, rng=rng)
    exact = (np.array([0.0, 1.0]), np.array([0.1, 0.1]))
    by_moments = score("ei", members, best=0.5, rng=rng, moments=exact)
    assert by_members.order[0] == 0 and by_moments.order[0] == 1
    np.testing.assert_allclose(by_moments.mean, exact[0])
    np.testing.assert_allclose(by_moments.std, exact[1])


@pytest.mark.parametrize("name", ["pi", "ei", "ucb"])
def test_tensor_values_match_the_scores_and_have_finite_gradients(name: str) -> None:
    """The gradient polish reads the same acquisition as the scores, differentiable: from
    far below the best (z = -60, where EI underflows on a linear scale) to above it."""
    mean = np.array([-30.0, -3.0, -0.4, 0.0, 0.5, 2.0])
    spread = np.array([0.5, 1.0, 0.3, 2.0, 1.0, 0.1])
    exact = score(
        name,
        _members(list(mean), list(spread)),
        best=0.2,
        rng=np.random.default_rng(0),
        margin=0.05,
        moments=(mean, spread),
    )
    m = torch.tensor(mean, requires_grad=True)
    s = torch.tensor(spread, requires_grad=True)
    value = ACQUISITIONS[name].tensor_value(m, s, 0.2, 0.05)
    np.testing.assert_allclose(value.detach().numpy(), exact.value, rtol=1e-12)
    value.sum().backward()
    assert torch.isfinite(m.grad).all() and torch.isfinite(s.grad).all()
    # Each candidate's value rises with its mean, as any acquisition must.
    assert (m.grad > 0).all()
    # The gradient is the value's own slope (central differences in the mean).
    step = 1e-6
    up = ACQUISITIONS[name].tensor_value(torch.tensor(mean + step), s.detach(), 0.2, 0.05)
    down = ACQUISITIONS[name].tensor_value(torch.tensor(mean - step), s.detach(), 0.2, 0.05)
    np.testing.assert_allclose(m.grad.numpy(), ((up - down) / (2 * step)).numpy(), rtol=1e-5)

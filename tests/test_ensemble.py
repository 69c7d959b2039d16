import numpy as np
import pytest
import torch

from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.ensemble import EnsembleConfig


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] - 2 * (x[:, 3] - 0.5) ** 2
    return x, 100 + 10 * y  # Far from zero mean and unit scale: standardisation must cope.


def held_out_predictions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five members fit on 200 points, predicting 500 others; ``seed`` is the ensemble's.

    Also run for seeds 0-19 by ``benchmarks/quality_margins_models.py``.
    """
    x, y = _data(200, 0)
    x_test, y_test = _data(500, 1)
    ensemble = DeepEnsemble(8, ["objective"], config=EnsembleConfig(n_members=5), seed=seed)
    ensemble.fit(x, {"objective": y}, 500)
    return ensemble.predict(x_test, "objective"), y_test


def test_predictions_have_one_row_per_member_and_rank_held_out_points() -> None:
    predictions, y_test = held_out_predictions(seed=0)
    assert predictions.shape == (5, 500)
    # Ensemble seeds 0-19 (benchmarks/results/quality_margins_models.md): 0.995-0.998.
    assert _spearman(predictions.mean(axis=0), y_test) > 0.85
    # Members differ: that spread is uncertainty (its minimum, seeds 0-19: 0.017-0.064).
    assert np.all(predictions.std(axis=0) > 0)


def spread_near_and_far(seed: int) -> tuple[float, float]:
    """Mean member spread on the training corner and 1 away from it; ``seed``: the ensemble's."""
    x, y = _data(100, 0)
    ensemble = DeepEnsemble(8, ["objective"], seed=seed)
    ensemble.fit(x * 0.5, {"objective": y}, 400)  # Trained on the [0, 0.5] corner only.
    near = ensemble.predict(x[:50] * 0.5, "objective").std(axis=0).mean()
    far = ensemble.predict(1 + x[:50] * 0.5, "objective").std(axis=0).mean()
    return float(near), float(far)


def test_members_disagree_more_far_from_the_data() -> None:
    near, far = spread_near_and_far(seed=0)
    assert far > 2 * near  # far / near, ensemble seeds 0-19: 11-44 (median 27).


def sparse_head_predictions(seed: int) -> np.ndarray:
    """The "metric" head, known (as 1.0) for 10 of 100 points; ``seed``: the ensemble's."""
    x, y = _data(100, 0)
    other = np.full(100, np.nan)
    other[:10] = 1.0
    ensemble = DeepEnsemble(8, ["objective", "metric"], seed=seed)
    ensemble.fit(x, {"objective": y, "metric": other}, 200)
    return ensemble.predict(x, "metric")


def test_missing_targets_do_not_train_their_head() -> None:
    metric = sparse_head_predictions(seed=0)
    assert np.all(np.isfinite(metric))
    # |mean - 1|, ensemble seeds 0-19: 0.0001-0.006.
    np.testing.assert_allclose(metric.mean(), 1.0, atol=0.2)


def test_same_seed_same_fit() -> None:
    x, y = _data(50, 0)
    first, second = (DeepEnsemble(8, ["objective"], seed=3) for _ in range(2))
    for ensemble in (first, second):
        ensemble.fit(x, {"objective": y}, 50)
    np.testing.assert_array_equal(first.predict(x, "objective"), second.predict(x, "objective"))


def test_target_without_a_head_is_rejected() -> None:
    x, y = _data(10, 0)
    ensemble = DeepEnsemble(8, ["objective"], seed=0)
    with pytest.raises(ValueError, match="No head for targets"):
        ensemble.fit(x, {"latency": y}, 1)


def test_prior_functions_stay_fixed_while_the_members_learn() -> None:
    # EnsembleConfig(prior_scale=...): each member adds a fixed random network (Osband et al.
    # 2018). Training must move the members and leave the priors alone, and a saved ensemble
    # must bring its priors back, or reloaded predictions would change.
    x, y = _data(60, 0)
    config = EnsembleConfig(n_members=3, prior_scale=1.0)
    ensemble = DeepEnsemble(8, ["objective"], config=config, seed=0)
    before = {k: v.clone() for k, v in ensemble.network.state_dict().items()}
    ensemble.fit(x, {"objective": y}, 50)
    after = ensemble.network.state_dict()
    prior_keys = [k for k in after if k.startswith("prior.")]
    assert prior_keys
    assert all(torch.equal(before[k], after[k]) for k in prior_keys)
    assert not torch.equal(before["trunk.0.linear.weight"], after["trunk.0.linear.weight"])
    reloaded = DeepEnsemble.from_state(ensemble.state())
    np.testing.assert_allclose(
        reloaded.predict(x, "objective"), ensemble.predict(x, "objective"), rtol=1e-6
    )
    without = DeepEnsemble.from_state(ensemble.state(), config=EnsembleConfig(n_members=3))
    assert not np.allclose(without.predict(x, "objective"), ensemble.predict(x, "objective"))


def test_bootstrap_counts_are_per_member_and_kept_as_rows_arrive() -> None:
    ensemble = DeepEnsemble(8, ["objective"], config=EnsembleConfig(bootstrap=True), seed=0)
    first = ensemble._bootstrap_counts(20).clone()
    later = ensemble._bootstrap_counts(500)
    assert later.shape == (6, 500)
    assert torch.equal(later[:, :20], first)  # A result keeps its counts in later fits.
    assert torch.all(later == later.round()) and later.min() == 0
    assert not torch.equal(later[0], later[1])
    assert 0.8 < float(later.mean()) < 1.2  # Poisson(1).
    x, y = _data(60, 0)
    ensemble.fit(x, {"objective": y}, 20)
    assert np.isfinite(ensemble.predict(x, "objective")).all()


@pytest.mark.parametrize(
    ("option", "error"),
    [({"prior_scale": -1.0}, ValueError), ({"bootstrap": "yes"}, TypeError)],
)
def test_diversity_options_are_checked(option: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(option))):
        EnsembleConfig(**option)

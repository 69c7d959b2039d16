import numpy as np
import optuna
from optuna.distributions import FloatDistribution
import pytest

from optuna_deepens.dataset import OBJECTIVE
from optuna_deepens.dataset import CopulaTransform
from optuna_deepens.dataset import build_training_data
from optuna_deepens.encoding import SearchSpaceEncoder


def test_copula_spreads_a_compressed_top_and_tames_outliers() -> None:
    # NAS-like: most networks near 93, a few dead ones at 10.
    values = np.array([10.0, 10.0, 92.9, 93.0, 93.1, 93.2, 93.3, 93.4])
    scores = CopulaTransform.fit(values)(values)
    assert np.all(np.diff(scores) >= 0)
    assert scores[0] == scores[1]  # Ties share a rank.
    gaps = np.diff(scores)
    assert gaps[-1] > 0.1 and gaps[1] < 2 * gaps[-1]  # 0.1 points at the top now count.


def test_inverse_round_trips_and_extrapolates_beyond_the_best() -> None:
    values = np.array([1.0, 4.0, 2.0, 8.0])
    transform = CopulaTransform.fit(values)
    np.testing.assert_allclose(transform.inverse(transform(values)), values)
    top = transform(np.array([8.0]))[0]
    assert transform.inverse(np.array([top + 0.5]))[0] > 8.0


def test_minimised_objective_is_negated_and_infinities_clipped() -> None:
    distribution = FloatDistribution(0, 1)
    trials = [
        optuna.trial.create_trial(params={"x": x}, distributions={"x": distribution}, value=v)
        for x, v in [(0.1, 3.0), (0.2, 1.0), (0.3, float("inf")), (0.4, 2.0)]
    ]
    encoder = SearchSpaceEncoder({"x": distribution})
    data = build_training_data(trials, encoder, optuna.study.StudyDirection.MINIMIZE)
    scores = data.targets[OBJECTIVE]
    assert data.n_clipped == 1
    assert np.argmax(scores) == 1  # The smallest value is the best.
    assert scores[2] == pytest.approx(scores[0])  # +inf when minimising: as bad as the worst.

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
import pytest

from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import build_training_data
from optuna_deepens.transforms import CopulaTransform
from optuna_deepens.transforms import metric_target


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


def test_standardized_scale_keeps_distances_where_the_copula_keeps_ranks() -> None:
    distribution = FloatDistribution(0, 1)
    values = [10.0, 92.9, 93.0, 93.4]  # One dead network far below a compressed top.
    trials = [
        optuna.trial.create_trial(params={"x": x}, distributions={"x": distribution}, value=v)
        for x, v in zip([0.1, 0.2, 0.3, 0.4], values)
    ]
    encoder = SearchSpaceEncoder({"x": distribution})
    direction = optuna.study.StudyDirection.MAXIMIZE
    z = build_training_data(trials, encoder, direction, scale="standardized").targets[OBJECTIVE]
    np.testing.assert_allclose(z, (np.array(values) - np.mean(values)) / np.std(values))
    copula = build_training_data(trials, encoder, direction).targets[OBJECTIVE]
    gaps = np.diff(copula)  # Even rank steps: the top's 0.1 points weigh as much as 83 points.
    assert gaps.max() < 2 * gaps.min()
    assert np.diff(z)[0] > 50 * np.diff(z)[1]


def test_recorded_metrics_of_pruned_and_failed_trials_are_training_rows() -> None:
    study = optuna.create_study(direction="minimize")
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    for i, state in enumerate(states):
        trial = study.ask()
        trial.suggest_int("width", 1, 8)
        if i < 3:  # The last complete trial recorded no metrics.
            trial.set_user_attr("zc_params", 1000.0 * (i + 1))
        if state == TrialState.PRUNED:
            trial.report(0.5, step=3)
        study.tell(trial, float(i) if state == TrialState.COMPLETE else None, state=state)
    encoder = SearchSpaceEncoder({"width": IntDistribution(1, 8)})
    data = build_training_data(study.trials, encoder, study.direction)
    # Complete trials first (their objective), then the pruned and failed ones (metrics only).
    assert len(data.internal) == 4
    assert np.isnan(data.targets[OBJECTIVE][2:]).all()
    assert np.isfinite(data.targets[OBJECTIVE][:2]).all()
    np.testing.assert_allclose(
        data.targets["params"], metric_target(np.array([1000.0, np.nan, 2000.0, 3000.0]))
    )
    assert data.metric_names == ("params",)

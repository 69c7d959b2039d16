"""The GP that scores candidates in spaces with numbers: fit, posterior draws, reversion to the
prior away from the data, and its use by the sampler."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import LowFidelityPruner
from optuna_deepens import MultiFidelity
from optuna_deepens import fidelity
from optuna_deepens import kernel
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.fitting import EnsembleFitter
from optuna_deepens.kernel import KernelAtFidelity
from optuna_deepens.kernel import KernelParams
from optuna_deepens.kernel import KernelSurrogate
from optuna_deepens.kernel import fit_kernel
from optuna_deepens.sampler import _numeric_surrogate
from optuna_deepens.training_data import LOW_FIDELITY
from optuna_deepens.training_data import OBJECTIVE
from optuna_deepens.training_data import build_training_data
from optuna_deepens.training_data import fidelity_rows


@pytest.fixture
def ensemble_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per ensemble fit of the test's studies."""
    fits: list[int] = []
    fit = EnsembleFitter.fit
    monkeypatch.setattr(
        EnsembleFitter, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k)
    )
    return fits


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    # Column 2 does not matter; column 0 matters most.
    return x, np.sin(6.0 * x[:, 0]) + 0.5 * x[:, 1] ** 2


def test_draws_interpolate_results_and_agree_with_the_exact_posterior() -> None:
    x, y = _data()
    model = KernelSurrogate(x, y, n_draws=256, seed=0)
    at_data = model.predict(x)
    assert at_data.shape == (256, len(x))
    # A deterministic objective: every draw passes (almost) through every result.
    assert np.abs(at_data - y).max() < 0.05
    # Between results, the draws' mean is the posterior mean: compare with the closed form.
    grid = np.random.default_rng(1).random((200, 3))
    params = model.params
    xt = torch.from_numpy(x[:, model._columns])
    k = params.covariance(xt, xt) + params.noise * torch.eye(len(x), dtype=torch.float64)
    cross = params.covariance(torch.from_numpy(grid[:, model._columns]), xt)
    standard = torch.from_numpy((y - y.mean()) / y.std())
    exact = (cross @ torch.linalg.solve(k, standard)).numpy() * y.std() + y.mean()
    draws = model.predict(grid)
    assert np.abs(draws.mean(axis=0) - exact).mean() < 0.05 * y.std()
    # The exact moments (what PI, EI and UCB read) are that closed form, and the draws'
    # spread estimates their standard deviation (256 draws of 512 random features each).
    mean, std = model.moments(grid)
    np.testing.assert_allclose(mean, exact, atol=1e-8)
    prior = params.scale - (cross * torch.linalg.solve(k, cross.T).T).sum(1)
    np.testing.assert_allclose(std, np.sqrt(prior.numpy()) * y.std(), rtol=1e-5)
    assert np.abs(draws.std(axis=0) - std).mean() < 0.25 * std.mean()  # 0.16 measured.


def test_moments_as_tensors_are_the_moments_and_differentiable() -> None:
    """What the gradient polish reads: the same exact moments, at a fidelity too, with the
    gradient of the mean matching its central differences."""
    x, y = _data()
    model = KernelSurrogate(x, y, n_draws=4, seed=0)
    grid = np.random.default_rng(1).random((50, 3))
    features = torch.from_numpy(grid).requires_grad_(True)
    mean, std = model.moments_tensor(features)
    expected = model.moments(grid)
    np.testing.assert_allclose(mean.detach().numpy(), expected[0], rtol=1e-12)
    np.testing.assert_allclose(std.detach().numpy(), expected[1], rtol=1e-12)
    mean.sum().backward()
    step = np.zeros_like(grid)
    step[:, 0] = 1e-6
    slope = (model.moments(grid + step)[0] - model.moments(grid - step)[0]) / 2e-6
    np.testing.assert_allclose(features.grad[:, 0].numpy(), slope, rtol=1e-4, atol=1e-6)
    at_low = KernelAtFidelity(KernelSurrogate(np.c_[x, x[:, :1] > 0.5], y, n_draws=4, seed=0), 0.0)
    tensor_mean, _ = at_low.moments_tensor(torch.from_numpy(grid))
    np.testing.assert_allclose(tensor_mean.numpy(), at_low.moments(grid)[0], rtol=1e-12)


def test_far_from_the_data_draws_revert_to_the_prior() -> None:
    """What the ensemble lacks: away from every result the mean goes back to the average
    result and the spread grows to the prior's, instead of extrapolating confidently."""
    x, y = _data()
    near = x[:, :] * 0.2  # All results in one corner of the cube.
    model = KernelSurrogate(near, y, n_draws=256, seed=0)
    inside = model.predict(near[:10] + 0.001)
    far = model.predict(np.full((5, 3), 1.0))
    assert inside.std(axis=0).max() < 0.2 * far.std(axis=0).min()
    assert np.abs(far.mean(axis=0) - y.mean()).max() < 0.6 * y.std()
    assert 0.4 * y.std() < far.std(axis=0).mean() < 2.5 * y.std()


def test_length_scales_find_the_parameter_that_does_not_matter() -> None:
    x, y = _data()
    standard = (y - y.mean()) / y.std()
    params = fit_kernel(torch.from_numpy(x), torch.from_numpy(standard), None)
    lengths = 1.0 / params.inverse_lengths2.sqrt().numpy()
    assert lengths[0] < lengths[1] < lengths[2]


def test_draws_are_fixed_by_the_seed_and_consistent_across_calls() -> None:
    x, y = _data()
    a = KernelSurrogate(x, y, n_draws=4, seed=3)
    b = KernelSurrogate(x, y, n_draws=4, seed=3)
    grid = np.random.default_rng(2).random((3000, 3))  # More than one prediction chunk.
    whole = a.predict(grid)
    np.testing.assert_allclose(whole, b.predict(grid))
    np.testing.assert_allclose(whole[:, 2500:], a.predict(grid[2500:]), atol=1e-9)
    assert not np.allclose(whole, KernelSurrogate(x, y, n_draws=4, seed=4).predict(grid))


def test_constant_columns_missing_results_and_warm_starts() -> None:
    x, y = _data()
    x = np.column_stack([np.ones(len(x)), x])  # An always-active parameter's activity bit.
    y = y.copy()
    y[:5] = np.nan  # Rows with metrics but no result.
    model = KernelSurrogate(x, y, n_draws=2, seed=0)
    assert np.isfinite(model.predict(x)).all()
    warm = KernelSurrogate(x, y, n_draws=2, seed=0, start=model.params)
    np.testing.assert_allclose(
        warm.params.inverse_lengths2.numpy(), model.params.inverse_lengths2.numpy(), rtol=0.05
    )


def test_repeated_rows_and_equal_results_give_finite_draws() -> None:
    x = np.repeat(np.random.default_rng(0).random((5, 2)), 4, axis=0)
    for y in (np.ones(len(x)), np.arange(len(x), dtype=float)):
        draws = KernelSurrogate(x, y, n_draws=3, seed=0).predict(x)
        assert np.isfinite(draws).all()


def test_the_sampler_refuses_an_unknown_numeric_surrogate() -> None:
    with pytest.raises(ValueError, match=r"numeric_surrogate='gp'.*'auto', 'kernel'"):
        DeepEnsembleSampler(numeric_surrogate="gp")


def test_auto_keeps_the_ensemble_when_it_knows_more_than_the_results() -> None:
    assert _numeric_surrogate("auto", None, ()) == "auto"
    assert _numeric_surrogate("auto", None, ("related",)) == "ensemble"
    pretrained = object()  # Only its presence matters here.
    assert _numeric_surrogate("auto", pretrained, ()) == "ensemble"  # type: ignore[arg-type]
    assert _numeric_surrogate("kernel", None, ("related",)) == "kernel"


def test_kernel_with_what_only_the_ensemble_reads_is_a_warning() -> None:
    related = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    related.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    with pytest.warns(UserWarning, match="cannot learn from pretrained or related_studies"):
        DeepEnsembleSampler(numeric_surrogate="kernel", related_studies=[related])


@pytest.mark.parametrize(
    ("space", "surrogate", "expected"),
    [
        ("numbers", "auto", True),
        ("mixed", "auto", True),
        ("choices", "auto", False),
        ("choices", "kernel", True),
    ],
)
def test_auto_takes_the_kernel_wherever_there_are_numbers(
    space: str, surrogate: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With categorical choices beside numbers too (measured on tests/synthetic.py, the
    branched space and tests/mixed.py); a space of choices alone keeps the ensemble unless
    the kernel is asked for."""
    calls = []
    original = KernelSurrogate.moments
    monkeypatch.setattr(
        KernelSurrogate, "moments", lambda self, f: calls.append(1) or original(self, f)
    )

    def objective(trial: optuna.Trial) -> float:
        bonus = trial.suggest_categorical("kind", ["a", "b"]) == "b" if space != "numbers" else 0
        if space == "choices":
            return bonus + (trial.suggest_categorical("c", [0, 1, 2]) - 1) ** 2
        x = trial.suggest_float("x", -2.0, 2.0)
        y = trial.suggest_int("y", 0, 8)
        return (x - 1.0) ** 2 + (y - 3) ** 2 + bonus

    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=4, numeric_surrogate=surrogate)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=6)
    assert bool(calls) == expected


@pytest.mark.parametrize("surrogate", ["kernel", "ensemble"])
def test_the_sampler_uses_the_chosen_surrogate(
    surrogate: str, monkeypatch: pytest.MonkeyPatch, ensemble_fits: list[int]
) -> None:
    calls = []
    original = KernelSurrogate.moments

    def counted(self: KernelSurrogate, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(features))
        return original(self, features)

    monkeypatch.setattr(KernelSurrogate, "moments", counted)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -2.0, 2.0)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        return (x - 1.0) ** 2 + (kind == "b")

    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=5, numeric_surrogate=surrogate)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=8)
    guided = [t for t in study.trials if t.user_attrs.get("deepens_source") == "model"]
    assert len(guided) == 3
    assert all(np.isfinite(t.user_attrs["deepens_predicted_mean"]) for t in guided)
    assert bool(calls) == (surrogate == "kernel")
    # Without constraints or metric bounds the kernel needs no ensemble: none is trained.
    assert bool(ensemble_fits) == (surrogate == "ensemble")
    # Inspection reads the model that scored: six members, or six draws of the kernel, which
    # pass through the results (the best trial predicted above the worst).
    worst = max(study.trials, key=lambda t: t.value)
    predicted = sampler.predict_objective([study.best_params, worst.params])
    assert predicted.shape == (6, 2)
    if surrogate == "kernel":
        assert (predicted[:, 0] > predicted[:, 1]).all()


@pytest.mark.parametrize(("acquisition", "expected"), [(None, "ei"), ("ts", "ts"), ("ucb", "ucb")])
def test_the_kernel_scores_with_log_ei_on_its_exact_moments_unless_told(
    acquisition: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EI from the posterior's mean and spread, not from six draws' sample statistics: on
    LCBench (15 tasks x 3 seeds) it left 0.6-1.1 pp of summed mean regret where Thompson
    sampling on the same kernel left 4.2 (GPSampler 3.3)."""
    moments = []
    original = KernelSurrogate.moments
    monkeypatch.setattr(
        KernelSurrogate, "moments", lambda self, f: moments.append(1) or original(self, f)
    )

    def objective(trial: optuna.Trial) -> float:
        return (trial.suggest_float("x", -2.0, 2.0) - 1.0) ** 2 + trial.suggest_int("y", 0, 4)

    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=4, acquisition=acquisition)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=6)
    guided = [t for t in study.trials if t.user_attrs.get("deepens_source") == "model"]
    assert [t.user_attrs["deepens_acquisition_function"] for t in guided] == [expected] * 2
    assert bool(moments) == (expected != "ts")
    assert all(t.user_attrs["deepens_predicted_std"] > 0 for t in guided)


def test_one_kernel_learns_both_fidelities_through_a_fidelity_column() -> None:
    """Short runs read 1 lower everywhere: read at each fidelity, the GP returns each."""
    x, y = _data(60)
    low = np.concatenate([x, np.zeros((len(x), 1))], axis=1)
    full = np.concatenate([x[:20], np.ones((20, 1))], axis=1)
    model = KernelSurrogate(np.vstack([low, full]), np.r_[y - 1.0, y[:20]], n_draws=8, seed=0)
    for fid, expected in ((0.0, y - 1.0), (1.0, y)):
        mean = KernelAtFidelity(model, fid).moments(x)[0]
        assert np.abs(mean - expected).max() < 0.1
        assert KernelAtFidelity(model, fid).predict(x).shape == (8, len(x))
    # Full results of the 40 architectures only run short are known through the short runs:
    # off by less than half the 1.0 between the fidelities.
    unseen = KernelAtFidelity(model, 1.0).moments(x[20:])[0]
    assert np.abs(unseen - y[20:]).mean() < 0.5


SOURCES = ("model", "promotion")  # Guided trials: short runs, and full trainings.


def _short_runs(trial: optuna.Trial) -> float:
    """Full result -((x - 1)^2 + (y - 3)^2 / 4); short runs (fewer steps) read lower."""
    x, y = trial.suggest_float("x", -2.0, 2.0), trial.suggest_int("y", 0, 8)
    value = 0.0
    for step in range(1, fidelity(trial) + 1):
        value = -((x - 1.0) ** 2 + (y - 3) ** 2 / 4) * (1.0 + 2.0 / step)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def test_fidelity_rows_hold_every_full_result_and_every_short_run() -> None:
    short_runs = MultiFidelity(low_step=2, full_step=8)
    sampler = DeepEnsembleSampler(seed=0, multi_fidelity=short_runs, n_startup_trials=4)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=LowFidelityPruner())
    study.optimize(_short_runs, n_trials=30)
    encoder = SearchSpaceEncoder(study.trials[0].distributions)
    data = build_training_data(
        study.trials, encoder, study.direction, low_step=short_runs.low_step
    )
    full_condition = short_runs.condition(short_runs.full_step)
    features, targets = fidelity_rows(data, full_condition)
    n_full = int(np.isfinite(data.targets[OBJECTIVE]).sum())
    n_low = int(np.isfinite(data.targets[LOW_FIDELITY]).sum())
    assert n_full >= 1 and n_low > n_full  # Most trials were short runs.
    assert features.shape == (n_full + n_low, data.features.shape[1] + 1)
    assert len(targets) == len(features) and np.isfinite(targets).all()
    assert (features[:n_full, -1] == full_condition).all()
    assert (features[n_full:, -1] == 0.0).all()  # Every short run stopped at the low step.


@pytest.mark.parametrize("surrogate", ["kernel", "auto"])
def test_with_short_runs_the_kernel_scores_every_level_and_no_ensemble_is_fitted(
    surrogate: str, ensemble_fits: list[int]
) -> None:
    """``"auto"`` too: on LCBench's short runs the kernel left less regret than the ensemble."""
    short_runs = MultiFidelity(low_step=2, full_step=8)
    sampler = DeepEnsembleSampler(
        seed=0, multi_fidelity=short_runs, n_startup_trials=4, numeric_surrogate=surrogate
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=LowFidelityPruner())
    study.optimize(_short_runs, n_trials=30)
    guided = [t for t in study.trials if t.user_attrs.get("deepens_source") in SOURCES]
    levels = {t.user_attrs["deepens_fidelity"] for t in guided}
    assert levels == {"low", "high"}  # Short runs, and full trainings (promotions) after them.
    assert {t.user_attrs["deepens_acquisition_function"] for t in guided} == {"ei"}
    assert not ensemble_fits
    # Inspection reads the objective at the full step, whichever level scored last: the best
    # full result above the corner farthest from the optimum (-15.25 there).
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    predicted = sampler.predict_objective([best.params, {"x": -2.0, "y": 8}])
    assert predicted.shape == (6, 2)
    assert predicted[:, 0].mean() > predicted[:, 1].mean()


def test_large_covariances_agree_without_the_pairwise_difference_tensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of short runs would need a [rows, rows, columns] tensor; the expanded square
    gives the same covariance (and gradient) in rows x rows memory."""
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.integers(0, 2, size=(40, 12)), dtype=torch.float64)
    b = torch.tensor(rng.random((30, 12)), dtype=torch.float64)
    lengths = torch.tensor(rng.random(12) + 0.1, dtype=torch.float64, requires_grad=True)
    params = KernelParams(lengths, torch.tensor(1.3, dtype=torch.float64), torch.tensor(0.01))
    direct = params.covariance(a, b)
    (direct_grad,) = torch.autograd.grad(direct.sum(), lengths)
    monkeypatch.setattr(kernel, "_DIRECT_ELEMENTS", 0)
    expanded = params.covariance(a, b)
    (expanded_grad,) = torch.autograd.grad(expanded.sum(), lengths)
    assert torch.allclose(direct, expanded, atol=1e-10)
    assert torch.allclose(direct_grad, expanded_grad, atol=1e-8)
    assert torch.allclose(params.covariance(a, a).diagonal(), params.scale.expand(40))

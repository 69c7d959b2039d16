"""Optuna's own sampler test suites, unmodified, run against DeepEnsembleSampler."""

from collections.abc import Callable

from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import MultiObjectiveSamplerTestCase
from optuna.testing.pytest_samplers import RelativeSamplerTestCase
import pytest

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig

# No startup trials, as the suites' own samplers run them: the model starts at two results,
# so the suites' short studies exercise the fitted model.
_FAST = EnsembleConfig(cold_steps=60, warm_steps=15)


class TestDeepEnsembleSampler(
    BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase
):
    @pytest.fixture
    def sampler(self) -> Callable[[], DeepEnsembleSampler]:
        return lambda: DeepEnsembleSampler(
            seed=0, n_startup_trials=0, n_candidates=256, ensemble_config=_FAST
        )

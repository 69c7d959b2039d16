"""optuna-deepens: neural architecture search for Optuna with a deep-ensemble surrogate."""

from optuna_deepens.dry_run import DryRunTrial
from optuna_deepens.dry_run import SearchSpaceError
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.sampler import DeepEnsembleSampler

__version__ = "0.1.0"

__all__ = ["DeepEnsembleSampler", "DryRunTrial", "EnsembleConfig", "SearchSpaceError"]

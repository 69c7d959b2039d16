"""optuna-deepens: neural architecture search for Optuna with a deep-ensemble surrogate."""

from optuna_deepens import data
from optuna_deepens import zero_cost
from optuna_deepens.budgets import BudgetSearch
from optuna_deepens.budgets import search_budgets
from optuna_deepens.dry_run import DryRunTrial
from optuna_deepens.dry_run import SearchSpaceError
from optuna_deepens.ensemble import EnsembleConfig
from optuna_deepens.multi_fidelity import LowFidelityPruner
from optuna_deepens.multi_fidelity import MultiFidelity
from optuna_deepens.multi_fidelity import fidelity
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.pretraining_set import CacheError
from optuna_deepens.pretraining_set import PretrainingSet
from optuna_deepens.pretraining_set import build_pretraining_set
from optuna_deepens.sampler import DeepEnsembleSampler
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.surrogate import SearchSpaceMismatchError
from optuna_deepens.surrogate import SurrogateFileError
from optuna_deepens.surrogate import pretrain
from optuna_deepens.training import TrainingConfig
from optuna_deepens.training import TrainingRun
from optuna_deepens.trust_region import TrustRegion
from optuna_deepens.zero_cost import MeasureOptions
from optuna_deepens.zero_cost import ModelMeasurementError
from optuna_deepens.zero_cost import measure_and_record

__version__ = "0.1.0"

__all__ = [
    "BudgetSearch",
    "CacheError",
    "DeepEnsembleSampler",
    "DryRunTrial",
    "EnsembleConfig",
    "LowFidelityPruner",
    "MeasureOptions",
    "MultiFidelity",
    "ModelMeasurementError",
    "PretrainedSurrogate",
    "PretrainingSet",
    "SearchSpaceError",
    "SearchSpaceMismatchError",
    "SurrogateFileError",
    "TrainingConfig",
    "TrainingObjective",
    "TrainingRun",
    "TrustRegion",
    "build_pretraining_set",
    "data",
    "fidelity",
    "measure_and_record",
    "pretrain",
    "search_budgets",
    "zero_cost",
]

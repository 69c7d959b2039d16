"""The NAS-Bench-201 table as an ordinary Optuna objective.

A row of the table replaces training a network, so a search strategy can be run hundreds of
times. Everything here is the *benchmark*, not a search method: the table (loaded once per
process), the six-edge search space, the objective, the low-fidelity hook and the zero-cost
metrics. The samplers never import this module; they only see ``trial.suggest_categorical``.

The data file is the one described in ``../shared/benchdata/nb201/README.md``; it is read in
place and never copied into the repository.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import csv
from dataclasses import dataclass
import functools
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "benchdata" / "nb201" / "nb201.csv"

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_EDGES = 6
EDGE_NAMES = tuple(f"edge{i}" for i in range(N_EDGES))
N_ARCHITECTURES = len(OPS) ** N_EDGES  # 15,625
DATASETS = ("cifar10", "cifar100", "imagenet16")
DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
# The optima quoted by the thesis (Table 5.4, rounded). Runs compare against the table's exact
# maximum instead; a test checks that both agree to the published precision.
PUBLISHED_OPTIMA = {"cifar10": 94.37, "cifar100": 73.51, "imagenet16": 47.31}

FULL_EPOCHS = 200
LOW_EPOCHS = 12
# Cost of a trial in "equivalent full evaluations" (epochs trained / 200), as a user attr so that
# the runner can count cost the same way once some trials are low fidelity.
COST_ATTR = "nb201_cost"
EPOCHS_ATTR = "nb201_epochs"
ZERO_COST_METRICS = ("params_m", "flops_m", "latency_ms")

Architecture = tuple[str, ...]
# Decides how many epochs a trial trains: FULL_EPOCHS, or LOW_EPOCHS for a low-fidelity trial.
Fidelity = Callable[[optuna.Trial], int]


@dataclass(frozen=True)
class NB201Table:
    """Every architecture's row, indexed by its tuple of six operations."""

    path: str
    architectures: tuple[Architecture, ...]
    arch_strings: tuple[str, ...]
    columns: dict[str, np.ndarray]
    rows: dict[Architecture, int]

    def row(self, arch: Sequence[str]) -> int:
        """Row of ``arch``; a KeyError names the architecture if it is not in the table."""
        return self.rows[tuple(arch)]

    def value(self, arch: Sequence[str], column: str) -> float:
        return float(self.columns[column][self.row(arch)])

    def optimum(self, dataset: str) -> float:
        """The best 200-epoch test accuracy: the value a run must reach to count as solved."""
        return float(self.columns[objective_column(dataset)].max())

    def optimal_architectures(self, dataset: str) -> list[Architecture]:
        """All architectures at the optimum (CIFAR-10 has two, tied at 94.3733)."""
        column = self.columns[objective_column(dataset)]
        return [self.architectures[i] for i in np.flatnonzero(column == column.max())]


def objective_column(dataset: str) -> str:
    return f"{dataset}_test_acc_200ep"


def low_fidelity_column(dataset: str, split: str = "test") -> str:
    """12-epoch accuracy; ``split="val"`` is the README's harder, more realistic variant."""
    return f"{dataset}_{split}_acc_{LOW_EPOCHS}ep"


@functools.lru_cache(maxsize=4)
def load_table(path: str | Path = DEFAULT_DATA) -> NB201Table:
    """Read the CSV once per process (worker processes each pay ~0.2 s once, not per run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"NAS-Bench-201 table not found at {path}; pass --data PATH (see "
            "../shared/benchdata/nb201/README.md)."
        )
    with path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    architectures = tuple(tuple(r[f"op{i}"] for i in range(N_EDGES)) for r in records)
    numeric = [
        name
        for name in records[0]
        if name.startswith(DATASETS) and name not in ("arch_index", "arch_str")
    ]
    columns = {name: np.array([float(r[name]) for r in records]) for name in numeric}
    table = NB201Table(
        path=str(path),
        architectures=architectures,
        arch_strings=tuple(r["arch_str"] for r in records),
        columns=columns,
        rows={arch: i for i, arch in enumerate(architectures)},
    )
    _check(table)
    return table


def _check(table: NB201Table) -> None:
    """Fail loudly on a truncated or foreign file rather than benchmark on it."""
    if len(table.rows) != N_ARCHITECTURES or len(table.architectures) != N_ARCHITECTURES:
        raise ValueError(
            f"{table.path}: expected {N_ARCHITECTURES} distinct architectures, "
            f"found {len(table.rows)} distinct in {len(table.architectures)} rows."
        )
    unknown = {op for arch in table.architectures for op in arch} - set(OPS)
    if unknown:
        raise ValueError(f"{table.path}: unknown operations {sorted(unknown)}.")
    for dataset in DATASETS:
        missing = [
            c
            for c in (objective_column(dataset), low_fidelity_column(dataset))
            if c not in table.columns
        ]
        if missing:
            raise ValueError(f"{table.path}: missing columns {missing}.")


def search_space() -> dict[str, CategoricalDistribution]:
    """The distributions the objective's suggest calls create, for samplers that need them."""
    return {name: CategoricalDistribution(OPS) for name in EDGE_NAMES}


def suggest_architecture(trial: optuna.Trial) -> Architecture:
    """The six edge choices, in the order of the official ``arch_str``."""
    return tuple(trial.suggest_categorical(name, OPS) for name in EDGE_NAMES)


def full_fidelity(trial: optuna.Trial) -> int:
    """Mono-fidelity: every trial is a full 200-epoch evaluation (cost 1)."""
    return FULL_EPOCHS


def report_low_fidelity(
    trial: optuna.Trial,
    table: NB201Table,
    dataset: str,
    arch: Sequence[str],
    split: str = "test",
) -> float:
    """Report the 12-epoch accuracy at step 12, as a training loop would after 12 epochs."""
    value = table.value(arch, low_fidelity_column(dataset, split))
    trial.report(value, LOW_EPOCHS)
    return value


def make_objective(
    table: NB201Table,
    dataset: str,
    fidelity: Fidelity = full_fidelity,
    low_fidelity_split: str = "test",
    record_metrics: Sequence[str] = (),
    prune_check: bool = False,
) -> Callable[[optuna.Trial], float]:
    """An ordinary Optuna objective returning the 200-epoch test accuracy (maximise).

    ``fidelity`` is the hook for multi-fidelity methods: every trial reports the 12-epoch
    accuracy at step 12; when the hook answers ``LOW_EPOCHS`` the trial then ends PRUNED (its
    full value is never known), costing 12/200 of an evaluation. ``prune_check`` insists that
    the study's pruner agrees to stop it there (a companion pruner is under test).
    ``record_metrics`` names zero-cost metrics the trial records as ``zc_*`` user attrs, as an
    objective measuring its model would.
    """
    column = objective_column(dataset)

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial)
        epochs = fidelity(trial)
        if epochs not in (LOW_EPOCHS, FULL_EPOCHS):
            raise ValueError(f"The table has {LOW_EPOCHS} and {FULL_EPOCHS} epochs, not {epochs}.")
        trial.set_user_attr(EPOCHS_ATTR, epochs)
        trial.set_user_attr(COST_ATTR, epochs / FULL_EPOCHS)
        for name in record_metrics:
            trial.set_user_attr(f"zc_{name}", table.value(arch, f"{dataset}_{name}"))
        # A training loop reports its epochs as it goes: the 12th epoch's accuracy is known
        # in every trial, the 200th only in a full one.
        report_low_fidelity(trial, table, dataset, arch, low_fidelity_split)
        if epochs == LOW_EPOCHS:
            if not trial.should_prune() and prune_check:
                raise RuntimeError("The study's pruner did not stop a low-fidelity trial.")
            raise optuna.TrialPruned()
        return table.value(arch, column)

    return objective


def zero_cost_metrics(table: NB201Table, dataset: str, arch: Sequence[str]) -> dict[str, float]:
    """Parameters (M), FLOPs (M) and GPU latency (ms): known without training."""
    return {name: table.value(arch, f"{dataset}_{name}") for name in ZERO_COST_METRICS}


def pretraining_records(
    table: NB201Table,
    dataset: str,
    n: int,
    seed: int,
    metrics: Sequence[str] = ZERO_COST_METRICS,
) -> list[dict[str, float | str]]:
    """``n`` distinct random architectures with their zero-cost metrics from the table.

    The benchmark's own measurements stand in for :func:`optuna_deepens.build_pretraining_set`
    (the protocol asks for the table's metrics), in the record form any user table takes.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(N_ARCHITECTURES, size=n, replace=False)
    records = []
    for row in rows:
        arch = table.architectures[int(row)]
        record: dict[str, float | str] = dict(zip(EDGE_NAMES, arch))
        record.update({name: float(table.columns[f"{dataset}_{name}"][row]) for name in metrics})
        records.append(record)
    return records


def arch_string(arch: Sequence[str]) -> str:
    """The official ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` form, for reports."""
    a = list(arch)
    return f"|{a[0]}~0|+|{a[1]}~0|{a[2]}~1|+|{a[3]}~0|{a[4]}~1|{a[5]}~2|"


def add_run_options(parser: argparse.ArgumentParser, *, quick_help: str) -> None:
    """The options every NAS-Bench-201 harness shares: workers, the quick run, output, resume."""
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--resume", action="store_true", help="keep finished runs with the same budget"
    )

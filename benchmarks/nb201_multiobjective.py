"""NAS-Bench-201: multi-objective and constrained (hardware-aware) search, and its overhead.

Three sections, each an ordinary Optuna study per (dataset, method, seed) on the NAS-Bench-201
table (six ``suggest_categorical`` calls answered from the table; see ``nb201_table.py``):

1. **Multi-objective** (``mo``): maximise the 200-epoch test accuracy, minimise the table's GPU
   latency (``latency_ms``). Every trial records its latency as the ``zc_latency_ms`` user attr;
   DeepEnsembleSampler is told ``objective_metrics={1: "latency_ms"}``, so it reads the second
   objective from that metric's head instead of learning it again. Per run: the hypervolume
   after 25, 50, 100 (and 150) evaluations as a share of the hypervolume of the *table's* true
   Pareto front, and the evaluations until the run's front reaches 95/98/99% of it (``null``:
   not within the budget). Hypervolume is measured on normalised objectives, each in [0, 1]:
   ``accuracy / max accuracy`` and ``(r - latency) / (r - min latency)`` with
   ``r = 1.1 * max latency``, above the reference point (0, 0), i.e. accuracy 0 and 1.1 times
   the table's slowest latency. Every trial counts as an evaluation, repeats included.
2. **Constrained** (``constrained``): maximise accuracy subject to ``latency_ms <= bound`` with
   the bound at the table's median latency (q50) and at its 25th percentile (q25). Runs stop at
   the constrained optimum (the best accuracy among the feasible rows) or at the budget. Per
   run: evaluations to that optimum, best feasible accuracy after 25/50/100 evaluations, and
   how many evaluated architectures were infeasible. ``deepens-bounds`` declares the bound
   (``metric_bounds``) with an exact table lookup as ``measure_metrics``; the other methods
   see it only through ``trial.set_constraint("latency", latency - bound)``. Optuna 5's
   GPSampler and TPESampler read ``trial.constraints`` themselves (``constraints_func`` is
   deprecated there; GPSampler switches to its constrained acquisition, TPE ranks infeasible
   trials by total violation), so they get no extra argument.
3. **Overhead** (``overhead``): seconds per trial of DeepEnsembleSampler at a history of 500
   trials, 2 objectives against 1, as ``benchmarks/overhead.py`` measures it: a study is
   pre-filled with 500 distinct random architectures (with ``zc_latency_ms`` attrs) and the
   sampling time (``ask()`` plus the ``suggest_*`` calls) of 12 more trials is timed; the
   median of the last 11 is the per-trial overhead (the first is a cold fit).

Multi-objective *and* multi-fidelity together is refused by DeepEnsembleSampler (a clear
ValueError at the first trial); the script checks and records that message instead of running
it.

Runs execute in worker processes with one torch thread each; ``results.json`` is rewritten
after every run (``--resume`` keeps finished runs with the same budget), then ``summary.md``
and one SVG plot per dataset (mean hypervolume share against evaluations) are written.

Run from the repository root. The results in ``results/nb201_multiobjective/`` came from the
second command (5 seeds, CIFAR-10: 29 min on 2 shared cores, ``deepens-pretrain`` ~220 s and
the other deepens runs ~95 s each); ``--seeds 20`` is the protocol's target, and ``--resume``
adds seeds or datasets to an existing ``results.json``::

    OMP_NUM_THREADS=1 python benchmarks/nb201_multiobjective.py --quick   # smoke test, ~2 min
    OMP_NUM_THREADS=1 python benchmarks/nb201_multiobjective.py --seeds 5 --datasets cifar10 \\
        --budget 150 --constrained-budget 100
    OMP_NUM_THREADS=1 python benchmarks/nb201_multiobjective.py --seeds 20 --datasets cifar10 \\
        --budget 150 --constrained-budget 100 --resume --method-seeds gp=10
    python benchmarks/nb201_multiobjective.py --report-only --datasets cifar10  # summary, plot
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import concurrent.futures
from dataclasses import dataclass
import datetime
import functools
import json
import math
import multiprocessing
import os
from pathlib import Path
import statistics
import sys
import time
import traceback
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from nb201_report import with_sources  # noqa: E402
from nb201_table import DATASET_LABELS  # noqa: E402
from nb201_table import DATASETS  # noqa: E402
from nb201_table import DEFAULT_DATA  # noqa: E402
from nb201_table import EDGE_NAMES  # noqa: E402
from nb201_table import N_ARCHITECTURES  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402
from nb201_table import ZERO_COST_METRICS  # noqa: E402
from nb201_table import NB201Table  # noqa: E402
from nb201_table import add_run_options  # noqa: E402
from nb201_table import load_table  # noqa: E402
from nb201_table import objective_column  # noqa: E402
from nb201_table import pretraining_records  # noqa: E402
from nb201_table import search_space  # noqa: E402
from nb201_table import suggest_architecture  # noqa: E402
from nb201_table import zero_cost_metrics  # noqa: E402
from provenance import cpu_model  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "nb201_multiobjective"
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "nb201_multiobjective-quick"
SECTIONS = ("mo", "constrained", "overhead")
DEFAULT_SEEDS = 5
DEFAULT_BUDGET = 100
QUICK_SEEDS = 1
QUICK_BUDGET = 30
MO_CHECKPOINTS = (25, 50, 100, 150)
HV_TARGETS = (0.95, 0.98, 0.99)
CONSTRAINED_CHECKPOINTS = (25, 50, 100)
LATENCY_QUANTILES = (50, 25)  # Bounds: these percentiles of the table's latency.
LATENCY = "latency_ms"
REFERENCE_LATENCY_FACTOR = 1.1
PRETRAINING_ARCHITECTURES = 2000  # Thesis Appendix A.
OVERHEAD_HISTORY = 500
OVERHEAD_TIMED = 12


# ------------------------------------------------------------------------------ the problem
@dataclass(frozen=True)
class Front:
    """The table's true accuracy/latency Pareto front and the normalisation of both objectives.

    Points are in the maximisation convention of :mod:`optuna_deepens.multi_objective`:
    ``(accuracy / max accuracy, (r - latency) / (r - min latency))``, reference point (0, 0).
    """

    max_accuracy: float
    min_latency: float
    reference_latency: float
    hypervolume: float
    size: int

    def normalise(self, accuracy: np.ndarray, latency: np.ndarray) -> np.ndarray:
        acc = np.asarray(accuracy, dtype=float) / self.max_accuracy
        lat = (self.reference_latency - np.asarray(latency, dtype=float)) / (
            self.reference_latency - self.min_latency
        )
        return np.stack([acc, lat], axis=-1)

    def share(self, accuracy: Sequence[float], latency: Sequence[float]) -> float:
        """Hypervolume of these evaluations as a share of the true front's."""
        from optuna_deepens.multi_objective import hypervolume

        points = self.normalise(np.array(accuracy), np.array(latency))
        return hypervolume(points, np.zeros(2)) / self.hypervolume


@functools.lru_cache(maxsize=8)
def true_front(data: str, dataset: str) -> Front:
    from optuna_deepens.multi_objective import hypervolume
    from optuna_deepens.multi_objective import non_dominated

    table = load_table(data)
    accuracy = table.columns[objective_column(dataset)]
    latency = table.columns[f"{dataset}_{LATENCY}"]
    front = Front(
        max_accuracy=float(accuracy.max()),
        min_latency=float(latency.min()),
        reference_latency=REFERENCE_LATENCY_FACTOR * float(latency.max()),
        hypervolume=1.0,
        size=0,
    )
    points = front.normalise(accuracy, latency)
    optimal = non_dominated(points)
    return Front(
        max_accuracy=front.max_accuracy,
        min_latency=front.min_latency,
        reference_latency=front.reference_latency,
        hypervolume=hypervolume(points[optimal], np.zeros(2)),
        size=int(optimal.sum()),
    )


def latency_bound(table: NB201Table, dataset: str, quantile: int) -> float:
    return float(np.percentile(table.columns[f"{dataset}_{LATENCY}"], quantile))


def constrained_optimum(table: NB201Table, dataset: str, bound: float) -> tuple[float, int]:
    """Best accuracy among the rows within the bound, and how many rows are within it."""
    feasible = table.columns[f"{dataset}_{LATENCY}"] <= bound
    return float(table.columns[objective_column(dataset)][feasible].max()), int(feasible.sum())


def record_metrics(trial: optuna.Trial, metrics: dict[str, float], names: Sequence[str]) -> None:
    for name in names:
        trial.set_user_attr(f"zc_{name}", metrics[name])


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class RunSpec:
    """One run: everything a worker process needs, and nothing that does not pickle."""

    section: str
    dataset: str
    method: str
    seed: int
    budget: int
    data: str
    quantile: int | None = None  # Constrained runs: the latency percentile of the bound.


@dataclass(frozen=True)
class Method:
    """How to build one search method.

    Attributes:
        make_sampler: The sampler for a run.
        description: One line for the summary.
        record: Zero-cost metrics each trial records as ``zc_*`` user attrs.
        set_constraint: Constrained runs: the objective reports ``latency - bound`` with
            ``trial.set_constraint``.
        expected_s_per_trial: Rough cost on one core, to start slow runs first.
    """

    make_sampler: Callable[[RunSpec], BaseSampler]
    description: str
    record: tuple[str, ...] = (LATENCY,)
    set_constraint: bool = True
    expected_s_per_trial: float = 0.01


def _deepens(**options: Any) -> Callable[[RunSpec], BaseSampler]:
    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        extra: dict[str, Any] = {}
        if spec.section == "mo":
            extra["objective_metrics"] = {1: LATENCY}
        return DeepEnsembleSampler(seed=spec.seed, **extra, **options)

    return make


def _pretrained_deepens(spec: RunSpec) -> BaseSampler:
    """Pretrained (simultaneous) on params, FLOPs and latency of 2,000 random cells, per seed."""
    from optuna_deepens import DeepEnsembleSampler
    from optuna_deepens import PretrainingSet
    from optuna_deepens import pretrain

    table = load_table(spec.data)
    records = pretraining_records(
        table, spec.dataset, PRETRAINING_ARCHITECTURES, seed=10_000 + spec.seed
    )
    pretraining_set = PretrainingSet.from_records(records, search_space=search_space())
    surrogate = pretrain(pretraining_set, mode="simultaneous", seed=spec.seed)
    return DeepEnsembleSampler(
        seed=spec.seed, pretrained=surrogate, objective_metrics={1: LATENCY}
    )


def bounded_deepens(dry_run: bool = False) -> Callable[[RunSpec], BaseSampler]:
    """Declared bound on latency, measured exactly by a table lookup before proposing.

    ``dry_run`` also passes ``search_space=suggest_architecture``, so that the sampler knows
    the architecture's parameters already at trial 0 (otherwise Optuna draws trial 0's
    parameters independently, before any bound can be checked).
    """

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        table = load_table(spec.data)
        assert spec.quantile is not None
        bound = latency_bound(table, spec.dataset, spec.quantile)

        def measure(params: dict[str, Any]) -> dict[str, float]:
            arch = tuple(params[name] for name in EDGE_NAMES)
            return {LATENCY: table.value(arch, f"{spec.dataset}_{LATENCY}")}

        extra: dict[str, Any] = {"search_space": suggest_architecture} if dry_run else {}
        return DeepEnsembleSampler(
            seed=spec.seed, metric_bounds={LATENCY: bound}, measure_metrics=measure, **extra
        )

    return make


def _tpe(spec: RunSpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(multivariate=True, seed=spec.seed)


def _gp(spec: RunSpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=spec.seed)


def _random(spec: RunSpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=spec.seed)


MO_METHODS: dict[str, Method] = {
    "deepens": Method(
        _deepens(),
        'DeepEnsembleSampler(objective_metrics={1: "latency_ms"}), default acquisition '
        "(expected hypervolume improvement)",
        expected_s_per_trial=0.4,
    ),
    "deepens-ts": Method(
        _deepens(acquisition="ts"),
        'DeepEnsembleSampler(objective_metrics={1: "latency_ms"}, acquisition="ts")',
        expected_s_per_trial=0.4,
    ),
    "deepens-pretrain": Method(
        _pretrained_deepens,
        "deepens pretrained (simultaneous) on params, FLOPs and latency of 2,000 random cells",
        record=ZERO_COST_METRICS,
        expected_s_per_trial=0.6,
    ),
    "nsga2": Method(
        lambda spec: optuna.samplers.NSGAIISampler(seed=spec.seed),
        "optuna.samplers.NSGAIISampler (population 50)",
    ),
    "tpe": Method(
        _tpe,
        "optuna.samplers.TPESampler(multivariate=True)",
    ),
    "gp": Method(
        _gp,
        "optuna.samplers.GPSampler (LogEHVI)",
        expected_s_per_trial=0.8,
    ),
    "random": Method(
        _random,
        "optuna.samplers.RandomSampler (draws with replacement)",
    ),
}

CONSTRAINED_METHODS: dict[str, Method] = {
    "deepens-bounds": Method(
        bounded_deepens(),
        "DeepEnsembleSampler(metric_bounds={latency_ms: bound}, measure_metrics=table lookup); "
        "no set_constraint",
        set_constraint=False,
        expected_s_per_trial=0.4,
    ),
    "deepens-bounds-ss": Method(
        bounded_deepens(dry_run=True),
        "deepens-bounds plus search_space=suggest_architecture (dry runs: trial 0 is checked "
        "against the bound too)",
        set_constraint=False,
        expected_s_per_trial=0.4,
    ),
    "deepens-constraint": Method(
        _deepens(),
        'DeepEnsembleSampler(); the objective calls trial.set_constraint("latency", ...)',
        expected_s_per_trial=0.4,
    ),
    "gp": Method(
        _gp,
        "optuna.samplers.GPSampler, reading trial.constraints itself (constrained LogEI)",
        expected_s_per_trial=0.3,
    ),
    "tpe": Method(
        _tpe,
        "optuna.samplers.TPESampler(multivariate=True), reading trial.constraints itself",
    ),
    "random": Method(
        _random,
        "optuna.samplers.RandomSampler (constraint ignored)",
    ),
}

METHODS = {"mo": MO_METHODS, "constrained": CONSTRAINED_METHODS}


# ---------------------------------------------------------------------------- one run
def run_mo(spec: RunSpec) -> dict[str, Any]:
    table = load_table(spec.data)
    method = MO_METHODS[spec.method]
    front = true_front(spec.data, spec.dataset)
    column = objective_column(spec.dataset)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial)
        metrics = zero_cost_metrics(table, spec.dataset, arch)
        record_metrics(trial, metrics, method.record)
        return table.value(arch, column), metrics[LATENCY]

    start = time.perf_counter()
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=method.make_sampler(spec)
    )
    study.optimize(objective, n_trials=spec.budget)
    wall = time.perf_counter() - start
    values = [t.values for t in study.trials]
    curve = [
        round(front.share([v[0] for v in values[:n]], [v[1] for v in values[:n]]), 5)
        for n in range(1, len(values) + 1)
    ]
    record: dict[str, Any] = {"seed": spec.seed}
    for checkpoint in MO_CHECKPOINTS:
        if checkpoint <= spec.budget:
            record[f"hv_at_{checkpoint}"] = curve[checkpoint - 1]
    for target in HV_TARGETS:
        record[f"evals_to_{_pct(target)}"] = next(
            (i + 1 for i, share in enumerate(curve) if share >= target - 1e-12), None
        )
    record.update(
        {
            "hv_final": curve[-1],
            "front_size": len(study.best_trials),
            "n_trials": len(study.trials),
            "distinct_archs": _distinct(study.trials),
            "wall_s": round(wall, 2),
            "curve": curve,
        }
    )
    return with_sources(record, study.trials)


def run_constrained(spec: RunSpec) -> dict[str, Any]:
    table = load_table(spec.data)
    method = CONSTRAINED_METHODS[spec.method]
    assert spec.quantile is not None
    bound = latency_bound(table, spec.dataset, spec.quantile)
    optimum, _ = constrained_optimum(table, spec.dataset, bound)
    column = objective_column(spec.dataset)

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial)
        metrics = zero_cost_metrics(table, spec.dataset, arch)
        record_metrics(trial, metrics, method.record)
        if method.set_constraint:
            trial.set_constraint("latency", metrics[LATENCY] - bound)
        return table.value(arch, column)

    tracker = _ConstrainedTracker(table, spec.dataset, bound, optimum, spec.budget)
    start = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=method.make_sampler(spec))
    study.optimize(objective, n_trials=spec.budget, callbacks=[tracker])
    wall = time.perf_counter() - start
    record: dict[str, Any] = {
        "seed": spec.seed,
        "evals_to_optimum": tracker.reached_at,
    }
    for checkpoint in CONSTRAINED_CHECKPOINTS:
        if checkpoint <= spec.budget:
            record[f"best_at_{checkpoint}"] = tracker.best_at(checkpoint)
    n = len(study.trials)
    record.update(
        {
            "best_feasible": tracker.best if tracker.best > -math.inf else None,
            "n_trials": n,
            "n_infeasible": tracker.n_infeasible,
            "infeasible_share": round(tracker.n_infeasible / n, 4),
            "first_feasible_at": tracker.first_feasible_at,
            "infeasible_at": tracker.infeasible_at[:20],
            "distinct_archs": _distinct(study.trials),
            "wall_s": round(wall, 2),
            "curve": tracker.curve,
        }
    )
    return with_sources(record, study.trials)


class _ConstrainedTracker:
    """Study callback: best feasible accuracy, infeasible count; stops at the optimum."""

    def __init__(
        self, table: NB201Table, dataset: str, bound: float, optimum: float, budget: int
    ) -> None:
        self.table, self.dataset, self.bound = table, dataset, bound
        self.optimum, self.budget = optimum, budget
        self.n = 0
        self.n_infeasible = 0
        self.infeasible_at: list[int] = []  # 1-based evaluation numbers.
        self.best = -math.inf
        self.reached_at: int | None = None
        self.first_feasible_at: int | None = None
        self.curve: list[list[float]] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.n += 1
        arch = tuple(trial.params[name] for name in EDGE_NAMES)
        latency = self.table.value(arch, f"{self.dataset}_{LATENCY}")
        if latency > self.bound:
            self.n_infeasible += 1
            self.infeasible_at.append(self.n)
        elif trial.value is not None:
            if self.first_feasible_at is None:
                self.first_feasible_at = self.n
            if trial.value > self.best:
                self.best = trial.value
                self.curve.append([self.n, self.best])
            if self.reached_at is None and self.best >= self.optimum:
                self.reached_at = self.n
                study.stop()

    def best_at(self, checkpoint: int) -> float | None:
        """Best feasible after ``checkpoint`` evaluations (the optimum once it was reached)."""
        if self.reached_at is None and self.n < checkpoint:
            return None
        values = [best for n, best in self.curve if n <= checkpoint]
        return values[-1] if values else None


def _distinct(trials: Sequence[FrozenTrial]) -> int:
    return len({tuple(sorted(t.params.items())) for t in trials})


def run_one(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    """Worker entry point: one run; a crash is recorded (with its traceback), not raised."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        record = run_mo(spec) if spec.section == "mo" else run_constrained(spec)
    except Exception as error:  # noqa: BLE001 - a sampler bug must not end the benchmark.
        record = {
            "seed": spec.seed,
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    return spec, record


def _init_worker() -> None:
    """One torch thread per worker: the workers are the parallelism, threads would fight."""
    os.environ["OMP_NUM_THREADS"] = "1"  # Before torch is first imported in this process.
    import torch

    torch.set_num_threads(1)


def execute(specs: Sequence[RunSpec], workers: int):
    """Yield (spec, record) as runs finish: in worker processes, or here when workers <= 1."""
    if workers <= 1:
        _init_worker()
        for spec in specs:
            yield run_one(spec)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = [pool.submit(run_one, spec) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


# ---------------------------------------------------------------------------- overhead
def _prefill(
    table: NB201Table, dataset: str, n: int, seed: int, n_objectives: int
) -> list[FrozenTrial]:
    from optuna.trial import create_trial

    rng = np.random.default_rng(seed)
    trials = []
    for row in rng.choice(N_ARCHITECTURES, size=n, replace=False):
        arch = table.architectures[int(row)]
        accuracy = float(table.columns[objective_column(dataset)][row])
        latency = float(table.columns[f"{dataset}_{LATENCY}"][row])
        trials.append(
            create_trial(
                params=dict(zip(EDGE_NAMES, arch)),
                distributions=search_space(),
                values=[accuracy, latency][:n_objectives],
                user_attrs={f"zc_{LATENCY}": latency},
            )
        )
    return trials


OVERHEAD_CELLS: dict[str, tuple[int, dict[str, Any]]] = {
    "1 objective (default: ts)": (1, {}),
    "2 objectives (default: ei)": (2, {"objective_metrics": {1: LATENCY}}),
    "2 objectives, ts": (2, {"objective_metrics": {1: LATENCY}, "acquisition": "ts"}),
}


def overhead_cell(data: str, dataset: str, label: str, history: int, timed: int) -> dict[str, Any]:
    """Sampling seconds of ``timed`` trials after ``history`` pre-filled ones (one process)."""
    _init_worker()
    from optuna_deepens import DeepEnsembleSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_objectives, options = OVERHEAD_CELLS[label]
    table = load_table(data)
    directions = ["maximize", "minimize"][:n_objectives]
    study = optuna.create_study(
        directions=directions, sampler=DeepEnsembleSampler(seed=0, **options)
    )
    study.add_trials(_prefill(table, dataset, history, seed=0, n_objectives=n_objectives))
    seconds = []
    for _ in range(timed):
        start = time.perf_counter()
        trial = study.ask()
        arch = suggest_architecture(trial)
        seconds.append(time.perf_counter() - start)
        latency = table.value(arch, f"{dataset}_{LATENCY}")
        trial.set_user_attr(f"zc_{LATENCY}", latency)
        accuracy = table.value(arch, objective_column(dataset))
        study.tell(trial, [accuracy, latency][:n_objectives])
    return {
        "label": label,
        "n_objectives": n_objectives,
        "options": {k: v for k, v in options.items() if k != "objective_metrics"},
        "history": history,
        "first_s": round(seconds[0], 4),
        "median_s": round(statistics.median(seconds[1:]), 4),
        "seconds": [round(s, 4) for s in seconds],
    }


def run_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Each cell in its own fresh process, one after another (nothing else of ours running)."""
    context = multiprocessing.get_context("spawn")
    cells = []
    for label in OVERHEAD_CELLS:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(
                overhead_cell,
                str(args.data),
                args.datasets[0],
                label,
                args.overhead_history,
                OVERHEAD_TIMED,
            )
            cell = future.result()
        print(f"overhead {label}: median {cell['median_s']} s/trial", flush=True)
        cells.append(cell)
    single = cells[0]["median_s"]
    for cell in cells:
        cell["ratio_to_single"] = round(cell["median_s"] / single, 3)
    return {"dataset": args.datasets[0], "history": args.overhead_history, "cells": cells}


def multi_fidelity_refusal(data: str) -> str:
    """The message DeepEnsembleSampler gives a 2-objective, multi-fidelity study."""
    from optuna_deepens import DeepEnsembleSampler
    from optuna_deepens import MultiFidelity

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = load_table(data)
    sampler = DeepEnsembleSampler(
        seed=0,
        objective_metrics={1: LATENCY},
        multi_fidelity=MultiFidelity(low_step=12, full_step=200),
    )
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial)
        return table.value(arch, objective_column("cifar10")), 1.0

    try:
        study.optimize(objective, n_trials=1)
    except ValueError as error:
        return f"ValueError: {error}"
    return "no error: the study ran (the refusal is missing)"


# ---------------------------------------------------------------------------- results file
def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"mo": {}, "constrained": {}}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


def group_key(spec: RunSpec) -> str:
    return spec.method if spec.quantile is None else f"q{spec.quantile}/{spec.method}"


def _group(results: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    per_dataset = results[spec.section].setdefault(spec.dataset, {})
    return per_dataset.setdefault(
        group_key(spec),
        {
            "method": spec.method,
            "quantile": spec.quantile,
            "budget": spec.budget,
            "description": METHODS[spec.section][spec.method].description,
            "runs": [],
        },
    )


# ---------------------------------------------------------------------------- CLI, planning
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="nb201.csv")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--mo-methods", nargs="+", choices=list(MO_METHODS), default=None)
    parser.add_argument(
        "--constrained-methods", nargs="+", choices=list(CONSTRAINED_METHODS), default=None
    )
    parser.add_argument("--seeds", type=int, default=None, help="runs per method: 0..N-1")
    parser.add_argument(
        "--method-seeds",
        action="append",
        default=[],
        metavar="NAME=N",
        help="cap the seeds of one method (e.g. gp=10, for both sections; repeatable)",
    )
    parser.add_argument("--budget", type=int, default=None, help="multi-objective evaluations")
    parser.add_argument(
        "--constrained-budget", type=int, default=None, help="constrained evaluations"
    )
    parser.add_argument("--quantiles", nargs="+", type=int, default=list(LATENCY_QUANTILES))
    parser.add_argument("--overhead-history", type=int, default=OVERHEAD_HISTORY)
    add_run_options(
        parser,
        quick_help=f"{QUICK_SEEDS} seed, CIFAR-10, budget {QUICK_BUDGET}, overhead at 100 trials, "
        f"into {QUICK_RESULTS_DIR.relative_to(REPO_ROOT)}/",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite summary.md and the plots from results.json, running nothing",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.datasets = args.datasets or (["cifar10"] if quick else list(DATASETS))
    args.mo_methods = args.mo_methods or list(MO_METHODS)
    args.constrained_methods = args.constrained_methods or list(CONSTRAINED_METHODS)
    args.seeds = args.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    args.budget = args.budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    args.constrained_budget = args.constrained_budget or args.budget
    if quick:
        args.overhead_history = min(args.overhead_history, 100)
    args.out = args.out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    seeds = {}
    for text in args.method_seeds:
        name, _, value = text.partition("=")
        if not value.isdigit():
            raise SystemExit(f"--method-seeds {text!r}: expected NAME=N")
        seeds[name] = int(value)
    args.method_seeds = seeds
    return args


def plan_runs(args: argparse.Namespace, results: dict[str, Any]) -> list[RunSpec]:
    """The runs still to do, slowest first; ``--resume`` keeps finished ones."""
    specs = []
    for dataset in args.datasets:
        for section in ("mo", "constrained"):
            if section not in args.sections:
                continue
            methods = args.mo_methods if section == "mo" else args.constrained_methods
            budget = args.budget if section == "mo" else args.constrained_budget
            quantiles: list[int | None] = [None] if section == "mo" else list(args.quantiles)
            for quantile in quantiles:
                for method in methods:
                    n_seeds = min(args.seeds, args.method_seeds.get(method, args.seeds))
                    probe = RunSpec(section, dataset, method, 0, budget, str(args.data), quantile)
                    group = results[section].get(dataset, {}).get(group_key(probe))
                    done: set[int] = set()
                    if group is not None and args.resume and group["budget"] == budget:
                        group["runs"] = [r for r in group["runs"] if "error" not in r]
                        done = {r["seed"] for r in group["runs"]}
                    elif group is not None:
                        del results[section][dataset][group_key(probe)]
                    specs += [
                        RunSpec(section, dataset, method, seed, budget, str(args.data), quantile)
                        for seed in range(n_seeds)
                        if seed not in done
                    ]
    specs.sort(key=lambda s: -METHODS[s.section][s.method].expected_s_per_trial * s.budget)
    return specs


def _versions() -> dict[str, str]:
    import torch

    return {"optuna": optuna.__version__, "torch": torch.__version__, "numpy": np.__version__}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = load_table(args.data)  # Fail here, not in every worker, if the file is wrong.
    json_path = args.out / "results.json"
    if args.report_only:
        results = load_results(json_path)
        for dataset, info in _problem_info(table, args).items():
            results.setdefault("problem", {}).setdefault(dataset, {}).update(info)
        write_json(json_path, results)
        print(write_summary(args.out, results), write_plots(args.out, results))
        return 0
    results = load_results(json_path) if args.resume else {"mo": {}, "constrained": {}}
    commit = git_commit()
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit and commit + ("-dirty" if git_dirty() else ""),
        "package_dirty": git_dirty("optuna_deepens"),
        "command": "OMP_NUM_THREADS=1 python benchmarks/nb201_multiobjective.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "workers": args.workers,
        "versions": _versions(),
    }
    results["problem"] = _problem_info(table, args)
    results["multi_fidelity_refusal"] = multi_fidelity_refusal(str(args.data))
    specs = plan_runs(args, results)
    write_json(json_path, results)
    print(f"{len(specs)} runs on {args.workers} worker(s) -> {args.out}", flush=True)
    start = time.perf_counter()
    for spec, record in execute(specs, args.workers):
        group = _group(results, spec)
        group["runs"] = sorted(
            [r for r in group["runs"] if r["seed"] != spec.seed] + [record],
            key=lambda r: r["seed"],
        )
        write_json(json_path, results)
        print(_progress_line(spec, record, time.perf_counter() - start), flush=True)
    results["meta"]["runs_s"] = round(time.perf_counter() - start, 1)
    if "overhead" in args.sections:
        results["overhead"] = run_overhead(args)
    write_json(json_path, results)
    summary = write_summary(args.out, results)
    plots = write_plots(args.out, results)
    print(f"done in {time.perf_counter() - start:.0f} s; {summary}; plots: {plots}")
    return 0


def _problem_info(table: NB201Table, args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for dataset in args.datasets:
        front = true_front(str(args.data), dataset)
        bounds = {}
        for quantile in args.quantiles:
            bound = latency_bound(table, dataset, quantile)
            optimum, n_feasible = constrained_optimum(table, dataset, bound)
            n_optimal = int(
                (
                    (table.columns[f"{dataset}_{LATENCY}"] <= bound)
                    & (table.columns[objective_column(dataset)] >= optimum)
                ).sum()
            )
            bounds[f"q{quantile}"] = {
                "bound_ms": bound,
                "optimum": optimum,
                "feasible_rows": n_feasible,
                "optimal_rows": n_optimal,
            }
        info[dataset] = {
            "front_size": front.size,
            "share_without_fastest": round(
                _share_without_fastest(table, str(args.data), dataset), 5
            ),
            "front_hypervolume": round(front.hypervolume, 6),
            "max_accuracy": front.max_accuracy,
            "min_latency_ms": front.min_latency,
            "reference_latency_ms": round(front.reference_latency, 4),
            "constrained": bounds,
        }
    return info


def _share_without_fastest(table: NB201Table, data: str, dataset: str) -> float:
    """The best hypervolume share a run can reach without the table's fastest architecture."""
    from optuna_deepens.multi_objective import hypervolume
    from optuna_deepens.multi_objective import non_dominated

    front = true_front(data, dataset)
    accuracy = table.columns[objective_column(dataset)]
    latency = table.columns[f"{dataset}_{LATENCY}"]
    keep = latency > latency.min()
    points = front.normalise(accuracy[keep], latency[keep])
    return hypervolume(points[non_dominated(points)], np.zeros(2)) / front.hypervolume


def _progress_line(spec: RunSpec, record: dict[str, Any], elapsed: float) -> str:
    where = f"{spec.section:11s} {spec.dataset:10s} {group_key(spec):24s} seed {spec.seed:2d}"
    if "error" in record:
        return f"[{elapsed:6.0f} s] {where}: ERROR {record['error']}"
    if spec.section == "mo":
        outcome = f"hv {record['hv_final']:.4f}, 99% at {record['evals_to_99']}"
    else:
        outcome = (
            f"optimum at {record['evals_to_optimum']}, best {record['best_feasible']}, "
            f"{record['n_infeasible']} infeasible"
        )
    return f"[{elapsed:6.0f} s] {where}: {outcome} ({record['wall_s']:.1f} s)"


# ---------------------------------------------------------------------------- summary
def _pct(target: float) -> str:
    return f"{round(target * 100):d}"


def _censored_stats(values: list[int | None], budget: int) -> str:
    """``mean / median (reached k/n)``; a run that never got there counts as the budget (≥)."""
    if not values:
        return "–"
    counted = [budget if v is None else v for v in values]
    n_censored = sum(v is None for v in values)
    mean = statistics.mean(counted)
    median = statistics.median(counted)
    # Censored runs sort last; the median is a lower bound when it involves one of them.
    mark = "≥ " if n_censored else ""
    median_mark = "≥ " if n_censored >= len(values) - len(values) // 2 else ""
    return f"{mark}{mean:.1f} / {median_mark}{median:g} ({len(values) - n_censored}/{len(values)})"


def _mean_median(values: list[float | None], digits: int = 4) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    text = f"{statistics.mean(present):.{digits}f} / {statistics.median(present):.{digits}f}"
    if len(present) < len(values):
        text += f" ({len(present)}/{len(values)})"
    return text


def _ok_runs(group: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in group["runs"] if "error" not in r]


def mo_table(per_method: dict[str, Any]) -> list[str]:
    budget = max(g["budget"] for g in per_method.values())
    checkpoints = [c for c in MO_CHECKPOINTS if c <= budget]
    head = (
        ["method", "runs"]
        + [f"HV share @{c}" for c in checkpoints]
        + [f"evals to {_pct(t)}%" for t in HV_TARGETS]
        + ["front size", "s/run"]
    )
    lines = _table_head(head)
    for name in MO_METHODS:
        group = per_method.get(name)
        if group is None:
            continue
        runs, cells = _first_cells(name, group)
        cells += [_mean_median([r.get(f"hv_at_{c}") for r in runs]) for c in checkpoints]
        cells += [
            _censored_stats([r[f"evals_to_{_pct(t)}"] for r in runs], group["budget"])
            for t in HV_TARGETS
        ]
        cells += [
            _mean_median([r["front_size"] for r in runs], 1),
            _mean_median([r["wall_s"] for r in runs], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _table_head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def _first_cells(name: str, group: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs that did not crash, and a row's first cells: the method and its run count."""
    runs = _ok_runs(group)
    errors = len(group["runs"]) - len(runs)
    cells = [f"**{name}**" if name.startswith("deepens") else name, str(len(runs))]
    if errors:
        cells[1] += f" (+{errors} crashed)"
    return runs, cells


def constrained_table(per_key: dict[str, Any], quantile: int) -> list[str]:
    head = (
        ["method", "runs", "evals to optimum"]
        + [f"best feasible @{c}" for c in CONSTRAINED_CHECKPOINTS]
        + ["infeasible evals", "infeasible share", "s/run"]
    )
    lines = _table_head(head)
    for name in CONSTRAINED_METHODS:
        group = per_key.get(f"q{quantile}/{name}")
        if group is None:
            continue
        runs, cells = _first_cells(name, group)
        cells.append(_censored_stats([r["evals_to_optimum"] for r in runs], group["budget"]))
        cells += [
            _mean_median([r.get(f"best_at_{c}") for r in runs], 2) for c in CONSTRAINED_CHECKPOINTS
        ]
        cells += [
            _mean_median([r["n_infeasible"] for r in runs], 1)
            + f", max {max((r['n_infeasible'] for r in runs), default=0)}",
            _mean_median([r["infeasible_share"] for r in runs], 3),
            _mean_median([r["wall_s"] for r in runs], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mean_counted(group: dict[str, Any] | None, key: str) -> float | None:
    """Mean evaluations to a target, censored runs counted as the budget."""
    if group is None or not _ok_runs(group):
        return None
    return statistics.mean(group["budget"] if r[key] is None else r[key] for r in _ok_runs(group))


def _against_best_peer(
    groups: dict[str, Any], key: str, methods: Sequence[str], factor: int, label: str
) -> list[str]:
    """One line per method of ours: its mean ``key`` against ``factor`` x fewer than the best
    peer's (censored runs counted as the budget)."""
    peers = {m: _mean_counted(g, key) for m, g in groups.items() if not m.startswith("deepens")}
    peers = {m: v for m, v in peers.items() if v is not None}
    if not peers:
        return []
    best_peer = min(peers, key=peers.__getitem__)
    target = peers[best_peer] / factor
    lines = []
    for method in methods:
        ours = _mean_counted(groups.get(method), key)
        if ours is None:
            continue
        lines.append(
            f"- {label} <= 1/{factor} of the best peer's: `{method}` {ours:.1f} vs "
            f"`{best_peer}` {peers[best_peer]:.1f} (target <= {target:.1f}): "
            f"**{'met' if ours <= target else 'not met'}**"
            + _censor_note(groups, method, best_peer, key)
        )
    return lines


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, checked on the mean evaluations (censored counted as budget)."""
    lines = []
    for dataset, per_method in results.get("mo", {}).items():
        lines += _against_best_peer(
            per_method,
            "evals_to_99",
            ("deepens", "deepens-ts", "deepens-pretrain"),
            3,
            f"{DATASET_LABELS[dataset]}, evaluations to 99% hypervolume",
        )
    for dataset, per_key in results.get("constrained", {}).items():
        quantiles = sorted({g["quantile"] for g in per_key.values()}, reverse=True)
        for quantile in quantiles:
            groups = {g["method"]: g for g in per_key.values() if g["quantile"] == quantile}
            lines += _against_best_peer(
                groups,
                "evals_to_optimum",
                ("deepens-bounds", "deepens-bounds-ss", "deepens-constraint"),
                2,
                f"{DATASET_LABELS[dataset]} q{quantile}, evaluations to the constrained optimum",
            )
            for method in ("deepens-bounds", "deepens-bounds-ss"):
                bounded = groups.get(method)
                if bounded is None or not _ok_runs(bounded):
                    continue
                worst = max(r["n_infeasible"] for r in _ok_runs(bounded))
                total = sum(r["n_infeasible"] for r in _ok_runs(bounded))
                lines.append(
                    f"- {DATASET_LABELS[dataset]} q{quantile}, no infeasible evaluation with "
                    f"declared exact bounds (`{method}`): {total} infeasible in "
                    f"{len(_ok_runs(bounded))} runs, at most {worst} in one: "
                    f"**{'met' if worst == 0 else 'not met'}**"
                )
    overhead = results.get("overhead")
    if overhead:
        cell = next(c for c in overhead["cells"] if c["label"].startswith("2 objectives (d"))
        met = cell["ratio_to_single"] <= 1.5
        lines.append(
            f"- Overhead at {overhead['history']} trials within 1.5x of single-objective: "
            f"{cell['median_s']} s vs {overhead['cells'][0]['median_s']} s per trial "
            f"({cell['ratio_to_single']}x): **{'met' if met else 'not met'}**"
        )
    return lines


def _censor_note(groups: dict[str, Any], ours: str, peer: str, key: str) -> str:
    censored = {
        name: sum(r[key] is None for r in _ok_runs(groups[name]))
        for name in (ours, peer)
        if name in groups
    }
    parts = [f"{n} of `{name}`" for name, n in censored.items() if n]
    if not parts:
        return ""
    return f" (censored runs, counted as the budget: {', '.join(parts)})"


def write_summary(out: Path, results: dict[str, Any]) -> Path:
    meta = results["meta"]
    lines = [
        "# NAS-Bench-201: multi-objective and constrained search (issue 16)",
        "",
        f"Written by `benchmarks/nb201_multiobjective.py` on {meta['date']}; commit "
        f"`{meta['commit']}` (uncommitted package changes: {meta['package_dirty']}); "
        f"CPU {meta['cpu']} ({meta['cores']} cores, shared with other work), {meta['workers']} "
        f"worker process(es), one torch thread each; versions {meta['versions']}.",
        "",
        f"Last command: `{meta['command']}`"
        + (" (with --resume, earlier runs were kept)." if "--resume" in meta["command"] else "."),
        "",
        "Cells are **mean / median over seeds**. Evaluations to a target count a run that did "
        "not reach it within its budget as the budget (marked ≥; `(k/n)` = runs that reached "
        "it). Every trial counts as one evaluation, repeated architectures included. Method "
        "descriptions are in `results.json`.",
    ]
    if meta.get("quick"):
        lines += ["", "**Quick mode: one seed, small budget; a smoke test, not a result.**"]
    problem = results.get("problem", {})
    mo = results.get("mo", {})
    if mo:
        lines += [
            "",
            "## 1. Multi-objective: maximise accuracy, minimise latency",
            "",
            "Hypervolume share = hypervolume of the run's evaluations / hypervolume of the "
            "table's true Pareto front, both on objectives normalised to [0, 1]: accuracy / "
            "max accuracy, and (r - latency) / (r - min latency) with r = 1.1 x the table's "
            "max latency; reference point (0, 0) = accuracy 0, latency r.",
        ]
        for dataset, per_method in mo.items():
            info = problem.get(dataset, {})
            lines += [
                "",
                f"**{DATASET_LABELS[dataset]}** (true front: {info.get('front_size')} "
                f"architectures; budget {max(g['budget'] for g in per_method.values())}; "
                "without the table's fastest architecture, the all-`skip_connect` cell, the "
                f"best reachable share is {info.get('share_without_fastest')}, so reaching 99% "
                "requires finding that one cell)",
                "",
                *mo_table(per_method),
            ]
        lines += [
            "",
            f"Multi-objective with multi-fidelity is refused by the sampler, so it is not run: "
            f"`{results.get('multi_fidelity_refusal')}`",
        ]
    constrained = results.get("constrained", {})
    if constrained:
        lines += [
            "",
            "## 2. Constrained: maximise accuracy with latency <= bound",
            "",
            "Bounds are percentiles of the table's latency; the constrained optimum is the "
            "best accuracy among the rows within the bound. Runs stop at that optimum, so "
            "'best feasible @N' is the optimum for a run that found it earlier, and infeasible "
            "counts are over the evaluations a run made (share = infeasible / evaluations).",
        ]
        for dataset, per_key in constrained.items():
            quantiles = sorted({g["quantile"] for g in per_key.values()}, reverse=True)
            for quantile in quantiles:
                info = problem.get(dataset, {}).get("constrained", {}).get(f"q{quantile}", {})
                budget = max(g["budget"] for g in per_key.values() if g["quantile"] == quantile)
                lines += [
                    "",
                    f"**{DATASET_LABELS[dataset]}, latency <= q{quantile} = "
                    f"{info.get('bound_ms', float('nan')):.4f} ms** ("
                    f"{info.get('feasible_rows')} feasible rows; constrained optimum "
                    f"{info.get('optimum')}, {info.get('optimal_rows')} row(s); "
                    f"budget {budget})",
                    "",
                    *constrained_table(per_key, quantile),
                ]
    overhead = results.get("overhead")
    if overhead:
        lines += [
            "",
            "## 3. Overhead of DeepEnsembleSampler: 2 objectives against 1",
            "",
            f"Study pre-filled with {overhead['history']} distinct random architectures "
            f"({DATASET_LABELS[overhead['dataset']]}, with `zc_latency_ms` attrs), then "
            f"{OVERHEAD_TIMED} trials timed (ask() + suggest calls); median of all but the "
            "first (cold fit), each cell in a fresh process with one torch thread.",
            "",
            "| study | median s/trial | first trial s | ratio to 1 objective |",
            "|---|---|---|---|",
        ]
        for cell in overhead["cells"]:
            lines.append(
                f"| {cell['label']} | {cell['median_s']} | {cell['first_s']} | "
                f"{cell['ratio_to_single']}x |"
            )
    lines += ["", "## The issue's targets", "", *(targets(results) or ["- (no results yet)"])]
    errors = [
        (section, dataset, key, r)
        for section in ("mo", "constrained")
        for dataset, groups in results.get(section, {}).items()
        for key, group in groups.items()
        for r in group["runs"]
        if "error" in r
    ]
    if errors:
        lines += ["", "## Crashed runs", ""]
        lines += [
            f"- {section} {dataset} {key} seed {r['seed']}: `{r['error']}`"
            for section, dataset, key, r in errors
        ]
    if mo:
        lines += ["", "## Plot", ""]
        lines += [f"![hypervolume share, {DATASET_LABELS[d]}](hypervolume_{d}.svg)" for d in mo]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- plot
_COLOURS = ("#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#7f7f7f")


def write_plots(out: Path, results: dict[str, Any]) -> list[Path]:
    """Mean hypervolume share against evaluations, one SVG per dataset (no plotting library)."""
    paths = []
    for dataset, per_method in results.get("mo", {}).items():
        curves = {}
        for name in MO_METHODS:
            runs = _ok_runs(per_method[name]) if name in per_method else []
            if runs:
                length = min(len(r["curve"]) for r in runs)
                curves[name] = np.mean([r["curve"][:length] for r in runs], axis=0)
        if not curves:
            continue
        path = out / f"hypervolume_{dataset}.svg"
        path.write_text(_svg(curves, f"NAS-Bench-201 {DATASET_LABELS[dataset]}", per_method))
        paths.append(path)
    return paths


def _svg(curves: dict[str, np.ndarray], title: str, per_method: dict[str, Any]) -> str:
    width, height, left, right, top, bottom = 760, 460, 70, 190, 40, 50
    x_max = max(len(c) for c in curves.values())
    y_low = max(
        0.0, math.floor(min(float(c[min(4, len(c) - 1)]) for c in curves.values()) * 20) / 20
    )
    y_high = 1.0

    def x(n: float) -> float:
        return left + (n - 1) / max(x_max - 1, 1) * (width - left - right)

    def y(v: float) -> float:
        v = min(max(v, y_low), y_high)
        return top + (y_high - v) / (y_high - y_low) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">{title}: mean hypervolume share of the true '
        "front (accuracy vs latency)</text>",
    ]
    for tick in np.arange(y_low, y_high + 1e-9, 0.05 if y_high - y_low <= 0.5 else 0.1):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    step = 25 if x_max > 60 else 10
    for tick in range(step, x_max + 1, step):
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{height - bottom}" '
            'stroke="#eee"/>'
            f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick}'
            "</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{y(0.99):.1f}" y2="{y(0.99):.1f}" '
        'stroke="black" stroke-dasharray="4 3"/>'
        f'<text x="{width - right - 4}" y="{y(0.99) - 4:.1f}" text-anchor="end">99%</text>'
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
        "evaluations</text>"
        f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(top + height - bottom) / 2})">hypervolume share</text>'
    )
    for i, (name, curve) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        points = " ".join(f"{x(n + 1):.1f},{y(float(v)):.1f}" for n, v in enumerate(curve))
        dash = "" if name.startswith("deepens") else ' stroke-dasharray="6 3"'
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}"/>'
        )
        n_runs = len(_ok_runs(per_method[name]))
        label_y = top + 16 + 20 * i
        parts.append(
            f'<line x1="{width - right + 12}" x2="{width - right + 36}" y1="{label_y - 4}" '
            f'y2="{label_y - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{width - right + 42}" y="{label_y}">{name} ({n_runs} runs)</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

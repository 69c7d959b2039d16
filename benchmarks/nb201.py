"""NAS-Bench-201: evaluations each sampler needs to reach the optimum (thesis Tables 5.3, 5.4).

For every (dataset, method, seed) an ordinary Optuna study maximises the 200-epoch test accuracy
of a NAS-Bench-201 cell (six ``suggest_categorical`` calls, answered from the table) until it
finds the best architecture of the table or spends its budget. Recorded per run:

* ``evals_to_optimum``: cost, in equivalent full evaluations, at the trial that reached the
  optimum; ``null`` when the budget ran out first (a *censored* run). Every trial is a full
  evaluation today, so this is the number of trials; the cost is read from each trial's
  ``nb201_cost`` user attr so that low-fidelity trials (cost 12/200) will count correctly.
* ``best_at_100`` / ``best_at_200``: best accuracy once 100 / 200 evaluations were spent (the
  optimum if it was reached earlier; ``null`` if the run stopped before without reaching it).
* ``curve``: the best-so-far curve as its improvement points ``[cost, best]``.

Why this protocol: it is the thesis's (Section 5.3.3), so our rows can be put beside its
published ones. The table is deterministic, so a method's spread over seeds is its own.

Methods are a registry (``METHODS``) of name -> factory; pretrained or multi-fidelity
variants of deepens are new entries (a sampler factory, and a fidelity policy for the
objective). Runs execute in worker processes, each with one torch thread, and each
dataset/method JSON is rewritten as its runs finish, so ``--resume`` continues a long run.

Run from the repository root::

    python benchmarks/nb201.py --quick        # 2 seeds, CIFAR-10, budget 60: ~30 s on 2 cores
    python benchmarks/nb201.py                # 20 seeds, 3 datasets, the protocol's methods
    python benchmarks/nb201.py --methods deepens local-search --datasets cifar10 --seeds 5
    python benchmarks/nb201.py --resume       # continue an interrupted run

NASZilla, where the published baselines come from, searches on *validation* loss by default;
here every method optimises the 200-epoch *test* accuracy directly, as the protocol asks, so
our baselines can be stronger than the published rows. Ours are the fair comparison for deepens.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import concurrent.futures
from dataclasses import dataclass
from dataclasses import field
import datetime
import functools
import math
import multiprocessing
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from baselines import LocalSearchSampler  # noqa: E402
from baselines import RegularizedEvolutionSampler  # noqa: E402
from nb201_report import CHECKPOINTS  # noqa: E402
from nb201_report import THESIS_METHOD  # noqa: E402
from nb201_report import MethodInfo  # noqa: E402
from nb201_report import collect_results  # noqa: E402
from nb201_report import load_results  # noqa: E402
from nb201_report import results_path  # noqa: E402
from nb201_report import with_sources  # noqa: E402
from nb201_report import write_plots  # noqa: E402
from nb201_report import write_results  # noqa: E402
from nb201_report import write_summary  # noqa: E402
from nb201_table import COST_ATTR  # noqa: E402
from nb201_table import DATASETS  # noqa: E402
from nb201_table import DEFAULT_DATA  # noqa: E402
from nb201_table import EDGE_NAMES  # noqa: E402
from nb201_table import FULL_EPOCHS  # noqa: E402
from nb201_table import LOW_EPOCHS  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402
from nb201_table import ZERO_COST_METRICS  # noqa: E402
from nb201_table import Fidelity  # noqa: E402
from nb201_table import add_run_options  # noqa: E402
from nb201_table import arch_string  # noqa: E402
from nb201_table import full_fidelity  # noqa: E402
from nb201_table import load_table  # noqa: E402
from nb201_table import make_objective  # noqa: E402
from nb201_table import pretraining_records  # noqa: E402
from nb201_table import search_space  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "nb201"
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "nb201-quick"
DEFAULT_BUDGET = 300
MULTI_FIDELITY_BUDGET = 60
DEFAULT_SEEDS = 20
QUICK_BUDGET = 60
QUICK_SEEDS = 2


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class RunSpec:
    """One run: everything a worker process needs, and nothing that does not pickle."""

    dataset: str
    method: str
    seed: int
    budget: float
    data: str


@dataclass(frozen=True)
class Method:
    """How to build one search method for a run.

    Attributes:
        make_sampler: The Optuna sampler for a run (it may read ``spec.data``, e.g. to
            pretrain on zero-cost metrics).
        description: One line for the summary.
        thesis_row: The thesis row ours is compared with, if any.
        make_fidelity: Which trials are low fidelity; full evaluations only by default.
        quick_budget: Budget under ``--quick`` when the default would take too long.
        record_metrics: Zero-cost metrics each trial records as ``zc_*`` user attrs.
        multi_fidelity: The sampler decides each trial's epochs (``optuna_deepens.fidelity``)
            and ``LowFidelityPruner`` stops the short ones at epoch 12.
        expected_s_per_trial: Rough cost on one CPU core, to start slow runs first.
    """

    make_sampler: Callable[[RunSpec], BaseSampler]
    description: str
    thesis_row: str | None = None
    make_fidelity: Callable[[RunSpec], Fidelity] = field(default=lambda spec: full_fidelity)
    quick_budget: int | None = None
    expected_s_per_trial: float = 0.01
    record_metrics: tuple[str, ...] = ()
    multi_fidelity: bool = False


def plain_deepens(
    trust_region: bool = False, acquisition: str | None = None, **options: Any
) -> Callable[[RunSpec], BaseSampler]:
    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        return DeepEnsembleSampler(
            seed=spec.seed,
            acquisition=acquisition,
            **_trust_region_option(trust_region),
            **options,
        )

    return make


def _trust_region_option(enabled: bool) -> dict[str, Any]:
    """An edit-distance trust region (an option of the sampler, off by default)."""
    from optuna_deepens import TrustRegion

    return {"trust_region": TrustRegion()} if enabled else {}


PRETRAINING_ARCHITECTURES = 2000  # Thesis Appendix A.


RELATED_SOURCE = "cifar10"
RELATED_SOURCE_TRIALS = 100


def related_deepens(
    source: str = RELATED_SOURCE, n_source_trials: int = RELATED_SOURCE_TRIALS
) -> Callable[[RunSpec], BaseSampler]:
    """DeepEnsembleSampler warm-started from a finished study of another dataset.

    The related study (default deepens, seed ``10_000 + seed``, ``n_source_trials`` trials on
    ``source``, not stopped at its optimum) runs inside the factory, as the user's earlier
    search; its evaluations are not counted in this run's. A run on ``source`` itself takes the
    next dataset in the table's order as its source (an earlier study of the same data would be
    no transfer).
    """

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        table = load_table(spec.data)
        origin = source if spec.dataset != source else DATASETS[1]
        earlier = optuna.create_study(
            direction="maximize", sampler=DeepEnsembleSampler(seed=10_000 + spec.seed)
        )
        earlier.optimize(make_objective(table, origin), n_trials=n_source_trials)
        return DeepEnsembleSampler(seed=spec.seed, related_studies=[earlier])

    return make


def _multi_fidelity(schedule: str) -> Any:
    from optuna_deepens import MultiFidelity

    return MultiFidelity(low_step=LOW_EPOCHS, full_step=FULL_EPOCHS, schedule=schedule)


def multi_fidelity_deepens(
    schedule: str = "promotion", **options: Any
) -> Callable[[RunSpec], BaseSampler]:
    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        return DeepEnsembleSampler(
            seed=spec.seed, multi_fidelity=_multi_fidelity(schedule), **options
        )

    return make


def pretrained_deepens(
    metrics: Sequence[str] = ZERO_COST_METRICS,
    mode: str = "simultaneous",
    replay: bool = True,
    schedule: str | None = None,
    n_startup_trials: int = 10,
    trust_region: bool = False,
) -> Callable[[RunSpec], BaseSampler]:
    """DeepEnsembleSampler pretrained on the table's zero-cost metrics of 2,000 random cells.

    Each seed draws its own 2,000 architectures and pretrains its own ensemble, as a user
    would; the pretraining time is part of the run's wall time.
    """

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler
        from optuna_deepens import PretrainingSet
        from optuna_deepens import pretrain

        table = load_table(spec.data)
        records = pretraining_records(
            table,
            spec.dataset,
            PRETRAINING_ARCHITECTURES,
            seed=10_000 + spec.seed,
            metrics=metrics,
        )
        pretraining_set = PretrainingSet.from_records(records, search_space=search_space())
        surrogate = pretrain(pretraining_set, mode=mode, seed=spec.seed)
        return DeepEnsembleSampler(
            seed=spec.seed,
            pretrained=surrogate,
            replay_pretraining=replay,
            multi_fidelity=None if schedule is None else _multi_fidelity(schedule),
            n_startup_trials=n_startup_trials,
            **_trust_region_option(trust_region),
        )

    return make


METHODS: dict[str, Method] = {
    "deepens": Method(
        plain_deepens(),
        "DeepEnsembleSampler(seed=s), plain: no pretraining, mono-fidelity",
        thesis_row=THESIS_METHOD,
        expected_s_per_trial=0.4,
    ),
    # The defaults study of issue 17: each acquisition, on this family and NAS-Bench-Graph.
    **{
        f"deepens-{name}": Method(
            plain_deepens(acquisition=name),
            f'DeepEnsembleSampler(acquisition="{name}"), otherwise plain',
            expected_s_per_trial=0.4,
        )
        for name in ("pi", "ei", "ucb")
    },
    "deepens-tr": Method(
        plain_deepens(trust_region=True),
        "deepens with trust_region=TrustRegion() (3 edits, patience 10)",
        expected_s_per_trial=0.4,
    ),
    "deepens-zscore": Method(
        plain_deepens(objective_scale="standardized"),
        'deepens with objective_scale="standardized" (z-scores, not the copula)',
        expected_s_per_trial=0.4,
    ),
    "deepens-kernel": Method(
        plain_deepens(numeric_surrogate="kernel"),
        'deepens with numeric_surrogate="kernel" (a GP over the one-hot choices, log EI)',
        expected_s_per_trial=0.2,
    ),
    "deepens-pretrain": Method(
        pretrained_deepens(),
        "DeepEnsembleSampler pretrained (simultaneous) on params, FLOPs and latency of 2,000 "
        "random cells; mono-fidelity",
        thesis_row=THESIS_METHOD,
        expected_s_per_trial=0.5,
        record_metrics=ZERO_COST_METRICS,
    ),
    "deepens-pretrain-tr": Method(
        pretrained_deepens(trust_region=True),
        "deepens-pretrain with trust_region=TrustRegion() (3 edits, patience 10)",
        expected_s_per_trial=0.5,
        record_metrics=ZERO_COST_METRICS,
    ),
    "deepens-mf": Method(
        multi_fidelity_deepens(),
        "DeepEnsembleSampler, multi-fidelity (12/200 epochs, promotion); one GP over the "
        "one-hot choices and the fidelity scores short runs and promotions (the default)",
        expected_s_per_trial=0.1,
        multi_fidelity=True,
    ),
    "deepens-pretrain-mf": Method(
        pretrained_deepens(schedule="promotion"),
        "DeepEnsembleSampler pretrained (simultaneous, 3 metrics) and multi-fidelity (promotion)",
        thesis_row=THESIS_METHOD,
        expected_s_per_trial=0.4,
        record_metrics=ZERO_COST_METRICS,
        multi_fidelity=True,
    ),
    "deepens-mf-ensemble": Method(
        multi_fidelity_deepens(numeric_surrogate="ensemble"),
        'deepens-mf with numeric_surrogate="ensemble": the members score short runs (UCB) and '
        "promotions (the default before 2026-12-02)",
        expected_s_per_trial=0.3,
        multi_fidelity=True,
    ),
    "deepens-mf-fixed": Method(
        multi_fidelity_deepens("fixed"),
        "deepens-mf with the thesis's fixed p=5/q=3/f=10 schedule",
        expected_s_per_trial=0.1,
        multi_fidelity=True,
    ),
    "deepens-mf-ensemble-fixed": Method(
        multi_fidelity_deepens("fixed", numeric_surrogate="ensemble"),
        "deepens-mf-ensemble with the fixed schedule",
        expected_s_per_trial=0.3,
        multi_fidelity=True,
    ),
    "deepens-pretrain-mf-fixed": Method(
        pretrained_deepens(schedule="fixed"),
        "DeepEnsembleSampler pretrained and multi-fidelity with the fixed schedule",
        expected_s_per_trial=0.4,
        record_metrics=ZERO_COST_METRICS,
        multi_fidelity=True,
    ),
    # Table 5.2 / Figure 5.7 ablation: how many metrics, learnt at once or one after another.
    "deepens-pretrain-1": Method(
        pretrained_deepens(("params_m",)),
        "DeepEnsembleSampler pretrained on params only (2,000 cells); mono-fidelity",
        expected_s_per_trial=0.5,
        record_metrics=("params_m",),
    ),
    "deepens-pretrain-2": Method(
        pretrained_deepens(("params_m", "latency_ms")),
        "DeepEnsembleSampler pretrained simultaneously on params and latency; mono-fidelity",
        expected_s_per_trial=0.5,
        record_metrics=("params_m", "latency_ms"),
    ),
    "deepens-pretrain-seq-2": Method(
        pretrained_deepens(("params_m", "latency_ms"), mode="sequential"),
        "DeepEnsembleSampler pretrained sequentially on params, then latency; mono-fidelity",
        expected_s_per_trial=0.5,
        record_metrics=("params_m", "latency_ms"),
    ),
    "deepens-pretrain-noreplay": Method(
        pretrained_deepens(replay=False),
        "deepens-pretrain without replaying the pretraining table during the search",
        expected_s_per_trial=0.4,
        record_metrics=ZERO_COST_METRICS,
    ),
    "deepens-pretrain-seq-3": Method(
        pretrained_deepens(mode="sequential"),
        "DeepEnsembleSampler pretrained sequentially on params, FLOPs, then latency; "
        "mono-fidelity",
        expected_s_per_trial=0.5,
        record_metrics=ZERO_COST_METRICS,
    ),
    "deepens-related": Method(
        related_deepens(),
        f"deepens with related_studies=[a finished deepens study of {RELATED_SOURCE_TRIALS} "
        f"evaluations on {RELATED_SOURCE}] (on {RELATED_SOURCE} itself: from {DATASETS[1]}); "
        "the related study's evaluations are not counted",
        expected_s_per_trial=0.6,
    ),
    "random": Method(
        lambda spec: optuna.samplers.RandomSampler(seed=spec.seed),
        "optuna.samplers.RandomSampler (draws with replacement)",
        thesis_row="Random",
    ),
    "tpe": Method(
        lambda spec: optuna.samplers.TPESampler(multivariate=True, seed=spec.seed),
        "optuna.samplers.TPESampler(multivariate=True)",
    ),
    "gp": Method(
        lambda spec: optuna.samplers.GPSampler(seed=spec.seed),
        "optuna.samplers.GPSampler",
        # Six categorical parameters keep it cheap here: ~0.15 s/trial up to 300 trials.
        expected_s_per_trial=0.15,
    ),
    "evolution": Method(
        lambda spec: RegularizedEvolutionSampler(search_space(), seed=spec.seed),
        "regularised evolution: 10 random, population 50, tournament 10, 1-edit mutation",
        thesis_row="Evolution",
    ),
    "local-search": Method(
        lambda spec: LocalSearchSampler(search_space(), seed=spec.seed),
        "local search (White et al. 2021): 10 random, first improvement, restarts",
        thesis_row="Local search",
    ),
}


# The table: each deepens configuration and every peer. The trust-region, fixed-schedule
# and pretraining-ablation variants are run on request (``--methods NAME`` or ``all``).
PROTOCOL_METHODS = (
    "deepens",
    "deepens-pretrain",
    "deepens-mf",
    "deepens-pretrain-mf",
    "gp",
    "tpe",
    "evolution",
    "local-search",
    "random",
)


# ---------------------------------------------------------------------------- one run
class _StopAtOptimumOrBudget:
    """Study callback: stop once the optimum is found or the budget is spent.

    A callback rather than ``n_trials`` because the budget is a cost, and low-fidelity trials
    will cost less than one evaluation each.
    """

    def __init__(self, optimum: float, budget: float, stop_at_optimum: bool = True) -> None:
        self.optimum = optimum
        self.budget = budget
        self.stop_at_optimum = stop_at_optimum
        self.cost = 0.0
        self.best = -math.inf
        self.reached_at: float | None = None
        self.curve: list[list[float]] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.cost += float(trial.user_attrs.get(COST_ATTR, 1.0))
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            if trial.value > self.best:
                self.best = trial.value
                self.curve.append([round(self.cost, 6), self.best])
            if self.reached_at is None and self.best >= self.optimum:
                self.reached_at = round(self.cost, 6)
        if self.cost >= self.budget - 1e-9 or (
            self.stop_at_optimum and self.reached_at is not None
        ):
            study.stop()


def run_study(spec: RunSpec, *, stop_at_optimum: bool = True) -> tuple[optuna.Study, dict]:
    """Run one search; return the study and its record (the JSON entry for this seed)."""
    table = load_table(spec.data)
    method = METHODS[spec.method]
    if method.multi_fidelity:
        from optuna_deepens import LowFidelityPruner
        from optuna_deepens import fidelity

        pruner: optuna.pruners.BasePruner = LowFidelityPruner()
        epochs: Fidelity = functools.partial(fidelity, default=FULL_EPOCHS)
    else:
        pruner, epochs = optuna.pruners.NopPruner(), method.make_fidelity(spec)
    study = optuna.create_study(
        direction="maximize", sampler=method.make_sampler(spec), pruner=pruner
    )
    objective = make_objective(
        table,
        spec.dataset,
        epochs,
        record_metrics=method.record_metrics,
        prune_check=method.multi_fidelity,
    )
    stopper = _StopAtOptimumOrBudget(table.optimum(spec.dataset), spec.budget, stop_at_optimum)
    # n_trials only guards against a stopper bug: 12-epoch trials cost 0.06 each.
    start = time.perf_counter()
    study.optimize(objective, n_trials=int(spec.budget * 20) + 1, callbacks=[stopper])
    wall = time.perf_counter() - start
    return study, _record(spec, study, stopper, wall)


def _record(
    spec: RunSpec, study: optuna.Study, stopper: _StopAtOptimumOrBudget, wall_s: float
) -> dict[str, Any]:
    best = study.best_trial
    record: dict[str, Any] = {
        "seed": spec.seed,
        "evals_to_optimum": stopper.reached_at,
    }
    for checkpoint in CHECKPOINTS:
        record[f"best_at_{checkpoint}"] = _best_at(stopper, checkpoint)
    record.update(
        {
            "n_trials": len(study.trials),
            "cost": round(stopper.cost, 6),
            "best": best.value,
            "best_arch": arch_string([best.params[name] for name in EDGE_NAMES]),
            "distinct_archs": len({tuple(t.params.items()) for t in study.trials}),
            "wall_s": round(wall_s, 2),
            "curve": stopper.curve,
        }
    )
    return with_sources(record, study.trials)


def _best_at(stopper: _StopAtOptimumOrBudget, checkpoint: float) -> float | None:
    """Best value once ``checkpoint`` evaluations were spent; None if the run never got there."""
    if stopper.reached_at is None and stopper.cost < checkpoint - 1e-9:
        return None
    values = [best for cost, best in stopper.curve if cost <= checkpoint + 1e-9]
    return values[-1] if values else None


def run_one(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    """Worker entry point: one run, quiet logs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, record = run_study(spec)
    return spec, record


def _init_worker() -> None:
    """One torch thread per worker: the workers are the parallelism, threads would fight."""
    os.environ["OMP_NUM_THREADS"] = "1"  # Before torch is first imported in this process.
    import torch

    torch.set_num_threads(1)


def _commit_label() -> str | None:
    commit = git_commit()
    return commit and commit + ("-dirty" if git_dirty() else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="nb201.csv")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[*sorted(METHODS), "all"],
        default=None,
        help="default: the protocol's methods (PROTOCOL_METHODS); 'all' adds the ablations",
    )
    parser.add_argument("--seeds", type=int, default=None, help="runs per method: seeds 0..N-1")
    parser.add_argument("--budget", type=float, default=None, help="evaluations per run")
    parser.add_argument(
        "--method-budget",
        action="append",
        default=[],
        metavar="NAME=N",
        help="override the budget of one method (e.g. gp=100; repeatable)",
    )
    add_run_options(
        parser,
        quick_help=f"{QUICK_SEEDS} seeds, CIFAR-10, budget {QUICK_BUDGET}, into "
        f"{QUICK_RESULTS_DIR.relative_to(REPO_ROOT)}/",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.datasets = args.datasets or (["cifar10"] if quick else list(DATASETS))
    if args.methods is None:
        args.methods = list(PROTOCOL_METHODS)
    elif "all" in args.methods:
        args.methods = list(METHODS)
    args.seeds = args.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    args.budget_given = args.budget is not None
    args.budget = args.budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    args.out = args.out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    args.method_budget = dict(_parse_budget_override(s) for s in args.method_budget)
    return args


def _parse_budget_override(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in METHODS or not value:
        raise SystemExit(f"--method-budget {text!r}: expected NAME=N with NAME in {list(METHODS)}")
    return name, float(value)


def budget_for(method: str, args: argparse.Namespace) -> float:
    """``--method-budget``, else ``--budget``, else the default for the method and mode.

    Multi-fidelity methods stop at ``MULTI_FIDELITY_BUDGET``: three times the issue's
    largest target, and a run that has not found the optimum by then is censored anyway.
    """
    if method in args.method_budget:
        return args.method_budget[method]
    if args.budget_given:
        return float(args.budget)
    spec = METHODS[method]
    budget = float(args.budget)
    if spec.multi_fidelity:
        budget = min(budget, MULTI_FIDELITY_BUDGET)
    if args.quick and spec.quick_budget is not None:
        budget = min(budget, spec.quick_budget)
    return budget


def plan_runs(args: argparse.Namespace) -> tuple[list[RunSpec], dict[tuple[str, str], list]]:
    """The runs to do, slowest first, and the runs kept from earlier (``--resume``)."""
    specs, kept = [], {}
    for dataset in args.datasets:
        for method in args.methods:
            budget = budget_for(method, args)
            done = _resumable_runs(args, dataset, method, budget)
            kept[(dataset, method)] = list(done.values())
            specs += [
                RunSpec(dataset, method, seed, budget, str(args.data))
                for seed in range(args.seeds)
                if seed not in done
            ]
    specs.sort(key=lambda s: -METHODS[s.method].expected_s_per_trial * s.budget)
    return specs, kept


def _resumable_runs(
    args: argparse.Namespace, dataset: str, method: str, budget: float
) -> dict[int, dict]:
    if not args.resume:
        return {}
    previous = load_results(results_path(args.out, dataset, method))
    if not previous or float(previous["budget"]) != budget:
        return {}
    return {r["seed"]: r for r in previous["runs"] if r["seed"] < args.seeds}


def execute(specs: Sequence[Any], workers: int, run: Callable[[Any], Any] | None = None):
    """Yield (spec, record) as runs finish: in worker processes, or here when workers <= 1.

    ``run`` (default :func:`run_one`) is another harness's module-level run function.
    """
    run = run or run_one
    if workers <= 1:
        yield from _execute_here(specs, run)
        return
    # spawn: workers start clean, without the parent's torch thread pools or locks.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = [pool.submit(run, spec) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


def _execute_here(specs: Sequence[Any], run: Callable[[Any], Any]):
    """Serial runs in this process (tests, debugging), with one torch thread meanwhile."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec in specs:
            yield run(spec)
    finally:
        torch.set_num_threads(previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = load_table(args.data)  # Fail here, not in every worker, if the file is wrong.
    specs, runs = plan_runs(args)
    note = run_and_record(
        args,
        specs,
        runs,
        command="python benchmarks/nb201.py " + " ".join(argv or sys.argv[1:]),
        versions=_versions(),
        info=lambda spec: {
            "optimum": table.optimum(spec.dataset),
            "description": METHODS[spec.method].description,
        },
    )
    all_results = collect_results(args.out)
    infos = {name: MethodInfo(m.description, m.thesis_row) for name, m in METHODS.items()}
    summary = write_summary(args.out, all_results, infos, note)
    write_plots(args.out, all_results)
    print(f"summary: {summary}")
    return 0


def run_and_record(
    args: argparse.Namespace,
    specs: Sequence[Any],
    runs: dict[tuple[str, str], list],
    *,
    command: str,
    versions: dict[str, str],
    info: Callable[[Any], dict[str, Any]],
    run: Callable[[Any], Any] | None = None,
    progress: Callable[[Any, dict[str, Any], float], str] | None = None,
) -> str:
    """Execute ``specs``, rewriting each dataset/method JSON as its runs finish (``info``: the
    spec's extra metadata), printing progress; returns the summary's note on this invocation.

    Shared by the table harnesses: ``nbgraph.py`` passes its own ``run`` and ``progress``.
    """
    progress = progress or _progress_line
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit_label(),
        "command": command,
        "quick": args.quick,
        "versions": versions,
        "workers": args.workers,
    }
    print(f"{len(specs)} runs on {args.workers} worker(s) -> {args.out}", flush=True)
    start = time.perf_counter()
    for spec, record in execute(specs, args.workers, run):
        done = runs[(spec.dataset, spec.method)]
        done.append(record)
        write_results(args.out, spec.dataset, spec.method, spec.budget, done, meta | info(spec))
        print(progress(spec, record, time.perf_counter() - start), flush=True)
    elapsed = time.perf_counter() - start
    note = (
        f"Last update {meta['date']} (commit {meta['commit']}); this invocation: "
        f"{len(specs)} runs in {elapsed:.0f} s on {args.workers} worker(s)."
    )
    if args.quick:
        note += " **Quick mode: 2 seeds, small budget; a smoke test, not a result.**"
    print(f"done in {elapsed:.1f} s")
    return note


def _versions() -> dict[str, str]:
    import torch

    return {"optuna": optuna.__version__, "torch": torch.__version__, "numpy": np.__version__}


def _progress_line(spec: RunSpec, record: dict[str, Any], elapsed: float) -> str:
    found = record["evals_to_optimum"]
    outcome = f"optimum at {found:g}" if found is not None else f"censored, best {record['best']}"
    return (
        f"[{elapsed:6.0f} s] {spec.dataset:10s} {spec.method:13s} seed {spec.seed:2d}: "
        f"{outcome} ({record['n_trials']} trials, {record['wall_s']:.1f} s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""LCBench (YAHPO Gym surrogate): regret of each sampler in a mixed numeric space, 34 tasks.

Why this benchmark: every earlier benchmark of the sampler (NAS-Bench-201, NAS-Bench-Graph)
searched categorical choices only. LCBench's space is the usual hyperparameter-optimisation
one: seven numbers, three on a log scale, three integers (``suggest_int`` with and without
``log``, ``suggest_float`` with and without), with a learning curve of 52 epochs behind every
configuration for multi-fidelity methods. The curves come from YAHPO Gym's surrogate of LCBench,
evaluated by ``lcbench_surrogate.py`` with onnxruntime alone (checked against yahpo-gym 1.0.2).

Protocol. For every (task, method, seed) an ordinary Optuna study maximises the validation
accuracy (%) at epoch 52 of an MLP on one OpenML task (``suggest_config``: seven plain
``suggest_*`` calls). The regret is the task's reference best minus the run's best, in
percentage points; the reference (``results/lcbench/reference_best.json``) is the best of a
seeded random search of 100,000 configurations at epoch 52 (``lcbench_surrogate.py
--reference-best``). A run that beats it scores regret 0 and is counted (``above_reference``).

* Mono-fidelity (default): every trial is a full training, cost 1. One run of budget 100 gives
  both budgets of the protocol, 50 and 100 (checkpoints 10, 25, 50, 100). Methods: ``deepens``,
  ``tpe``, ``gp``, ``random``; ``deepens-pi``/``-ei``/``-ucb`` and ``deepens-ensemble`` (the
  ensemble's members score the numbers instead of the kernel) on request.
* Multi-fidelity (``--fidelity multi``): each trial trains epoch by epoch, reporting the
  validation accuracy at each (``trial.report``) and asking ``trial.should_prune()``; it costs
  epochs trained / 52. The budget is in these equivalent full evaluations and a run stops once
  it is spent. The regret at N counts only trials that trained all 52 epochs by then (a pruned
  trial's early value is no result). Methods: ``deepens-mf`` (``MultiFidelity(low_step=L,
  full_step=52)`` with ``LowFidelityPruner``), ``tpe-hyperband`` (``HyperbandPruner(1, 52)``),
  ``tpe-median`` (``MedianPruner(n_warmup_steps=L)``), ``random`` (no pruning); L is
  ``--low-step`` (12 or 4).

Recorded per run (JSON per task and method, ``nb201_report``'s format): ``best_at_N`` /
``regret_at_N`` (``null`` if the run's budget is below N, or, multi-fidelity, no trial finished
by then), ``best``, ``regret``, ``above_reference``, ``best_config`` and its
``test_balanced_accuracy`` at epoch 52 (what the search would deploy; it never sees it),
``n_trials``/``n_complete``, ``cost``, ``evals_to_optimum`` (cost at which the run reached the
reference best, the shared report's name; ``null`` mostly), ``wall_s`` and the best-so-far
``curve`` as ``[cost, best]`` points. summary.md has a table per task and each method's mean
regret and mean rank over tasks.

Run from the repository root, with ``pip install -e ".[lcbench]"`` and the data folder
``../shared/benchdata/lcbench/`` (or ``--data``)::

    python benchmarks/lcbench.py --quick        # 2 tasks x 2 seeds, budget 10: ~8 s
    python benchmarks/lcbench.py --quick --fidelity multi   # ~45 s: deepens-mf trains
    python benchmarks/lcbench.py                # 34 tasks x 4 methods x 20 seeds, budget 100
    python benchmarks/lcbench.py --fidelity multi --low-step 4
    python benchmarks/lcbench.py --estimate     # time one run per method, extrapolate
    python benchmarks/lcbench.py --resume       # continue an interrupted run
    python benchmarks/lcbench.py --report       # rebuild summary.md from the JSON files only

Cost of the mono-fidelity protocol (``--estimate``, budget 100, one core shared with other
jobs): deepens 28-42 s a run, gp 51 s, tpe ~1 s, random 0.1 s, so ~80 s per (task, seed) and
34 x 20 of them: ~15 h of one core, ~7.5 h on 2 workers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from lcbench_surrogate import DEFAULT_DATA  # noqa: E402
from lcbench_surrogate import MAX_EPOCH  # noqa: E402
from lcbench_surrogate import REFERENCE_BEST  # noqa: E402
from lcbench_surrogate import TASKS  # noqa: E402
from lcbench_surrogate import LCBenchSurrogate  # noqa: E402
from lcbench_surrogate import load_surrogate  # noqa: E402
from lcbench_surrogate import read_reference_best  # noqa: E402

# The stopper, checkpoint and worker plumbing of nb201.py, reused as they are.
from nb201 import _best_at  # noqa: E402
from nb201 import _resumable_runs  # noqa: E402
from nb201 import _StopAtOptimumOrBudget  # noqa: E402
from nb201 import _versions  # noqa: E402
from nb201 import run_and_record  # noqa: E402
from nb201_report import AllResults  # noqa: E402
from nb201_report import load_results  # noqa: E402
from nb201_report import results_path  # noqa: E402
from nb201_report import with_sources  # noqa: E402
from nb201_report import write_report as report  # noqa: E402
from nb201_table import COST_ATTR  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402
from nb201_table import add_run_options  # noqa: E402
from nbgraph import _average_ranks  # noqa: E402
from nbgraph import _mean_of  # noqa: E402
from nbgraph import plain_deepens  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "lcbench"
# Under results/tmp/, which git ignores: a smoke test never lands in a commit.
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "tmp" / "lcbench-quick"
MONO, MULTI = "mono", "multi"
CHECKPOINTS = (10, 25, 50, 100)
RANKED_CHECKPOINTS = (50, 100)  # The protocol's two budgets.
DEFAULT_BUDGET = 100
DEFAULT_SEEDS = 20
LOW_STEPS = (4, 12)
DEFAULT_LOW_STEP = 12
QUICK_BUDGET = 10
QUICK_SEEDS = 2
QUICK_TASKS = ("167168", "168330")
TASK_LABELS = {task: f"OpenML task {task}" for task in TASKS}


# ------------------------------------------------------------------------ space, objective
def suggest_config(trial: optuna.Trial) -> dict[str, float]:
    """The seven hyperparameters of config_space.json, as plain suggest calls."""
    return {
        "batch_size": trial.suggest_int("batch_size", 16, 512, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        "max_dropout": trial.suggest_float("max_dropout", 0.0, 1.0),
        "max_units": trial.suggest_int("max_units", 64, 1024, log=True),
        "momentum": trial.suggest_float("momentum", 0.1, 0.99),
        "num_layers": trial.suggest_int("num_layers", 1, 5),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-1),
    }


def make_objective(
    surrogate: LCBenchSurrogate, task: str, *, fidelity: str = MONO
) -> Callable[[optuna.Trial], float]:
    """An ordinary Optuna objective: the validation accuracy (%) at epoch 52 (maximise).

    Mono-fidelity, one surrogate call per trial. Multi-fidelity, the whole learning curve in
    one call, then reported epoch by epoch as a training loop would, stopping when the study's
    pruner says so; a trial trains ``optuna_deepens.fidelity(trial)`` epochs (52 unless a
    multi-fidelity sampler decided fewer) and records its cost as the ``nb201_cost`` attr.
    """
    task = surrogate.check_task(task)

    def mono(trial: optuna.Trial) -> float:
        config = suggest_config(trial)
        trial.set_user_attr(COST_ATTR, 1.0)
        return float(surrogate.evaluate(task, [config], MAX_EPOCH)["val_accuracy"][0])

    def multi(trial: optuna.Trial) -> float:
        from optuna_deepens import fidelity as decided_epochs

        config = suggest_config(trial)
        epochs = decided_epochs(trial, default=MAX_EPOCH)
        if not 1 <= epochs <= MAX_EPOCH:
            raise ValueError(f"A trial trains 1..{MAX_EPOCH} epochs, not {epochs}.")
        curve = surrogate.learning_curve(task, config)["val_accuracy"]
        for epoch in range(1, epochs + 1):
            trial.report(float(curve[epoch - 1]), epoch)
            if trial.should_prune():
                trial.set_user_attr(COST_ATTR, epoch / MAX_EPOCH)
                raise optuna.TrialPruned()
        if epochs < MAX_EPOCH:
            raise RuntimeError(f"The study's pruner did not stop a {epochs}-epoch trial.")
        trial.set_user_attr(COST_ATTR, 1.0)
        return float(curve[-1])

    if fidelity not in (MONO, MULTI):
        raise ValueError(f"fidelity={fidelity!r}; choose {MONO!r} or {MULTI!r}.")
    return mono if fidelity == MONO else multi


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class RunSpec:
    """One run: everything a worker process needs, and nothing that does not pickle."""

    task: str
    method: str
    seed: int
    budget: int
    reference: float  # The task's reference best val_accuracy (%).
    fidelity: str = MONO
    low_step: int = DEFAULT_LOW_STEP
    data: str = str(DEFAULT_DATA)

    @property
    def dataset(self) -> str:
        """The task, under the name the shared JSON/progress helpers use."""
        return self.task


@dataclass(frozen=True)
class Method:
    """How to build one search method for a run.

    Attributes:
        make_sampler: The Optuna sampler for a run.
        description: One line for the summary.
        fidelities: The protocols (``mono``, ``multi``) the method belongs to.
        make_pruner: The study's pruner; ``None``: no pruning.
        expected_s_per_trial: Rough cost on one CPU core, to start slow runs first.
    """

    make_sampler: Callable[[RunSpec], BaseSampler]
    description: str
    fidelities: tuple[str, ...] = (MONO,)
    make_pruner: Callable[[RunSpec], BasePruner] | None = None
    expected_s_per_trial: float = 0.01


def multi_fidelity_deepens(
    numeric_surrogate: str = "auto", **fidelity_options: Any
) -> Callable[[RunSpec], BaseSampler]:
    """As ``nb201.py``'s deepens-mf: short runs of ``low_step`` epochs, promotion schedule;
    ``fidelity_options`` go to ``MultiFidelity`` (the multi-fidelity defaults study)."""

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler
        from optuna_deepens import MultiFidelity

        return DeepEnsembleSampler(
            seed=spec.seed,
            multi_fidelity=MultiFidelity(
                low_step=spec.low_step, full_step=MAX_EPOCH, **fidelity_options
            ),
            numeric_surrogate=numeric_surrogate,
        )

    return make


def _low_fidelity_pruner(spec: RunSpec) -> BasePruner:
    from optuna_deepens import LowFidelityPruner

    return LowFidelityPruner()


def _deepens_mf(
    make_sampler: Callable[[RunSpec], BaseSampler],
    description: str,
    expected_s_per_trial: float = 0.2,
) -> Method:
    """A multi-fidelity deepens method: its short runs end at the low step, pruned."""
    return Method(
        make_sampler,
        description,
        fidelities=(MULTI,),
        make_pruner=_low_fidelity_pruner,
        expected_s_per_trial=expected_s_per_trial,
    )


def _tpe(spec: RunSpec) -> BaseSampler:
    return optuna.samplers.TPESampler(multivariate=True, seed=spec.seed)


METHODS: dict[str, Method] = {
    "deepens": Method(
        plain_deepens(),
        "DeepEnsembleSampler(seed=s), plain: no pretraining, default acquisition (numbers "
        "scored by the kernel, log EI on its posterior)",
        expected_s_per_trial=0.5,
    ),
    # The defaults study: one entry per acquisition, run on request.
    **{
        f"deepens-{name}": Method(
            plain_deepens(name),
            f'DeepEnsembleSampler(acquisition="{name}"), otherwise plain',
            expected_s_per_trial=0.5,
        )
        for name in ("pi", "ei", "ucb", "ts")
    },
    "deepens-ensemble": Method(
        plain_deepens(numeric_surrogate="ensemble"),
        'DeepEnsembleSampler(numeric_surrogate="ensemble"): the members score the numbers '
        "(the default before the kernel)",
        expected_s_per_trial=0.5,
    ),
    "tpe": Method(
        _tpe, "optuna.samplers.TPESampler(multivariate=True)", expected_s_per_trial=0.02
    ),
    "gp": Method(
        lambda spec: optuna.samplers.GPSampler(seed=spec.seed),
        "optuna.samplers.GPSampler",
        expected_s_per_trial=0.3,
    ),
    "random": Method(
        lambda spec: optuna.samplers.RandomSampler(seed=spec.seed),
        "optuna.samplers.RandomSampler; multi-fidelity: every trial trains 52 epochs",
        fidelities=(MONO, MULTI),
    ),
    "deepens-mf": _deepens_mf(
        multi_fidelity_deepens(),
        "DeepEnsembleSampler(multi_fidelity=MultiFidelity(low_step=L, full_step=52)) "
        "(promotion schedule; one GP over both fidelities scores) with LowFidelityPruner()",
    ),
    # The multi-fidelity defaults study: the cost share of full trainings, the schedule, and
    # the model (the ensemble's short-run acquisition does not apply to the GP's log EI).
    **{
        f"deepens-mf-share{round(100 * share)}": _deepens_mf(
            multi_fidelity_deepens(full_cost_share=share),
            f"deepens-mf with MultiFidelity(full_cost_share={share})",
        )
        for share in (0.35, 0.5)
    },
    "deepens-mf-fixed": _deepens_mf(
        multi_fidelity_deepens(schedule="fixed"),
        'deepens-mf with MultiFidelity(schedule="fixed"): the thesis\'s p=5/q=3/f=10 rhythm, '
        "full trainings chosen by the model instead of promoted",
    ),
    "deepens-mf-ensemble": _deepens_mf(
        multi_fidelity_deepens("ensemble"),
        'deepens-mf with numeric_surrogate="ensemble": the members score short runs and '
        "promotions, UCB for short runs (the default before the kernel)",
        expected_s_per_trial=0.4,
    ),
    "tpe-hyperband": Method(
        _tpe,
        "TPESampler(multivariate=True) with HyperbandPruner(min_resource=1, max_resource=52)",
        fidelities=(MULTI,),
        make_pruner=lambda spec: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=MAX_EPOCH
        ),
        expected_s_per_trial=0.02,
    ),
    "tpe-median": Method(
        _tpe,
        "TPESampler(multivariate=True) with MedianPruner(n_warmup_steps=L)",
        fidelities=(MULTI,),
        make_pruner=lambda spec: optuna.pruners.MedianPruner(n_warmup_steps=spec.low_step),
        expected_s_per_trial=0.02,
    ),
}

PROTOCOL_METHODS = {
    MONO: ("deepens", "tpe", "gp", "random"),
    MULTI: ("deepens-mf", "tpe-hyperband", "tpe-median", "random"),
}
QUICK_METHODS = {
    MONO: ("deepens", "tpe", "random"),
    MULTI: ("deepens-mf", "tpe-hyperband", "tpe-median", "random"),
}


# ---------------------------------------------------------------------------- one run
def run_study(spec: RunSpec) -> tuple[optuna.Study, dict[str, Any]]:
    """Run one search; return the study and its record (the JSON entry for this seed)."""
    surrogate = load_surrogate(spec.data)
    method = METHODS[spec.method]
    if spec.fidelity not in method.fidelities:
        raise ValueError(f"{spec.method} is not a {spec.fidelity}-fidelity method.")
    start = time.perf_counter()
    pruner = method.make_pruner(spec) if method.make_pruner else optuna.pruners.NopPruner()
    study = optuna.create_study(
        # HyperbandPruner assigns brackets by a hash of the study's name: a fixed name keeps
        # a seeded run reproducible.
        study_name=f"lcbench-{spec.task}-{spec.method}-{spec.seed}",
        direction="maximize",
        sampler=method.make_sampler(spec),
        pruner=pruner,
    )
    objective = make_objective(surrogate, spec.task, fidelity=spec.fidelity)
    # Never stops early: the reference is a random search's best, not the optimum.
    stopper = _StopAtOptimumOrBudget(spec.reference, spec.budget, stop_at_optimum=False)
    # n_trials only guards against a stopper bug: a trial pruned at epoch 1 costs 1/52.
    n_trials = spec.budget if spec.fidelity == MONO else spec.budget * MAX_EPOCH + 1
    study.optimize(objective, n_trials=n_trials, callbacks=[stopper])
    wall = time.perf_counter() - start
    return study, _record(spec, surrogate, study, stopper, wall)


def _record(
    spec: RunSpec,
    surrogate: LCBenchSurrogate,
    study: optuna.Study,
    stopper: _StopAtOptimumOrBudget,
    wall_s: float,
) -> dict[str, Any]:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    record: dict[str, Any] = {"seed": spec.seed}
    for checkpoint in CHECKPOINTS:
        best_then = _best_at(stopper, checkpoint)
        record[f"best_at_{checkpoint}"] = best_then
        record[f"regret_at_{checkpoint}"] = _regret(spec.reference, best_then)
    best = max(complete, key=lambda t: t.value) if complete else None
    record.update(
        {
            "n_trials": len(study.trials),
            "n_complete": len(complete),
            "cost": round(stopper.cost, 6),
            "best": None if best is None else best.value,
            "regret": _regret(spec.reference, None if best is None else best.value),
            "above_reference": best is not None and best.value > spec.reference,
            "evals_to_optimum": stopper.reached_at,
            "best_config": None if best is None else best.params,
            "test_balanced_accuracy_of_best": None
            if best is None
            else _test_balanced_accuracy(surrogate, spec.task, best.params),
            "wall_s": round(wall_s, 2),
            "curve": stopper.curve,
        }
    )
    return with_sources(record, study.trials)


def _test_balanced_accuracy(
    surrogate: LCBenchSurrogate, task: str, config: dict[str, Any]
) -> float:
    """What deploying ``config`` would give: never seen by the search."""
    return float(surrogate.evaluate(task, [config], MAX_EPOCH)["test_balanced_accuracy"][0])


def _regret(reference: float, best: float | None) -> float | None:
    """Reference minus best in pp, clipped at 0 (a run may beat a random search's best)."""
    return None if best is None else round(max(0.0, reference - best), 12)


def run_one(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    """Worker entry point: one run, quiet logs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, record = run_study(spec)
    return spec, record


# ------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the lcbench folder")
    parser.add_argument(
        "--reference", type=Path, default=REFERENCE_BEST, help="reference_best.json"
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None, metavar="TASK")
    parser.add_argument("--fidelity", choices=(MONO, MULTI), default=MONO)
    parser.add_argument(
        "--low-step",
        type=int,
        choices=LOW_STEPS,
        default=DEFAULT_LOW_STEP,
        help="multi-fidelity: the epoch of deepens-mf's short runs and MedianPruner's warmup",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[*sorted(METHODS), "all"],
        default=None,
        help="default: PROTOCOL_METHODS of the fidelity; 'all': every method of the fidelity",
    )
    parser.add_argument("--seeds", type=int, default=None, help="runs per method: seeds 0..N-1")
    parser.add_argument(
        "--budget", type=int, default=None, help="equivalent full evaluations per run"
    )
    parser.add_argument(
        "--report", action="store_true", help="only rebuild summary.md from the JSON in --out"
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="time seed 0 of each method on the first task here, print the whole plan's time",
    )
    add_run_options(
        parser,
        quick_help=f"{QUICK_SEEDS} seeds, tasks {' + '.join(QUICK_TASKS)}, budget "
        f"{QUICK_BUDGET}, into {QUICK_RESULTS_DIR.relative_to(REPO_ROOT)}[-multi-lowL]/",
    )
    args = parser.parse_args(argv)
    quick, fidelity = args.quick, args.fidelity
    args.tasks = args.tasks or list(QUICK_TASKS if quick else TASKS)
    if args.methods is None:
        args.methods = list((QUICK_METHODS if quick else PROTOCOL_METHODS)[fidelity])
    elif "all" in args.methods:
        args.methods = [name for name, m in METHODS.items() if fidelity in m.fidelities]
    wrong = [m for m in args.methods if fidelity not in METHODS[m].fidelities]
    if wrong:
        parser.error(f"not {fidelity}-fidelity methods: {', '.join(wrong)}")
    args.seeds = args.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    args.budget = args.budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    if args.out is None:
        base = QUICK_RESULTS_DIR if quick else RESULTS_DIR
        suffix = "" if fidelity == MONO else f"-multi-low{args.low_step}"
        args.out = base.with_name(base.name + suffix)
    return args


def plan_runs(
    args: argparse.Namespace, references: dict[str, float]
) -> tuple[list[RunSpec], dict[tuple[str, str], list]]:
    """The runs to do, slowest first, and the runs kept from earlier (``--resume``)."""
    specs, kept = [], {}
    for task in args.tasks:
        for method in args.methods:
            _check_same_protocol(args, task, method)
            done = _resumable_runs(args, task, method, args.budget)
            kept[(task, method)] = list(done.values())
            specs += [
                RunSpec(
                    task,
                    method,
                    seed,
                    args.budget,
                    references[task],
                    args.fidelity,
                    args.low_step,
                    str(args.data),
                )
                for seed in range(args.seeds)
                if seed not in done
            ]
    specs.sort(key=lambda s: -METHODS[s.method].expected_s_per_trial * s.budget)
    return specs, kept


def _check_same_protocol(args: argparse.Namespace, task: str, method: str) -> None:
    """A results file is rewritten with every run: never mix fidelities or low steps in one."""
    previous = load_results(results_path(args.out, task, method))
    if previous and _protocol(previous) != _protocol(_info(args)):
        raise SystemExit(
            f"{results_path(args.out, task, method)} holds {_protocol(previous)} runs, not "
            f"{_protocol(_info(args))}: pass another --out."
        )


def _info(args: argparse.Namespace) -> dict[str, Any]:
    info = {"fidelity": args.fidelity, "full_epoch": MAX_EPOCH}
    return info | ({"low_step": args.low_step} if args.fidelity == MULTI else {})


def _protocol(payload: dict[str, Any]) -> tuple[Any, Any]:
    return payload.get("fidelity"), payload.get("low_step")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        summary = write_report(args.out, "Rebuilt from the JSON files by `--report`.")
        print(f"summary: {summary}")
        return 0
    load_surrogate(args.data)  # Fail here, not in every worker.
    references = read_reference_best(args.reference)
    missing = [t for t in args.tasks if t not in references]
    if missing:
        raise SystemExit(f"{args.reference} has no reference best for tasks {missing}.")
    if args.estimate:
        estimate(args, references)
        return 0
    specs, runs = plan_runs(args, references)

    def info(spec: RunSpec) -> dict[str, Any]:
        return _info(args) | {
            "reference_best": spec.reference,
            "description": METHODS[spec.method].description,
        }

    note = run_and_record(
        args,
        specs,
        runs,
        command="python benchmarks/lcbench.py " + " ".join(argv or sys.argv[1:]),
        versions=_versions() | {"onnxruntime": _onnxruntime_version()},
        info=info,
        run=run_one,
        progress=_progress_line,
    )
    summary = write_report(args.out, note)
    print(f"summary: {summary}")
    return 0


def estimate(args: argparse.Namespace, references: dict[str, float]) -> dict[str, float]:
    """Time seed 0 of each method on the first task here; print the whole plan's time.

    Every task costs about the same (the surrogate answers in microseconds; the samplers'
    own work dominates), so one task stands for all. Returns seconds per run by method.
    """
    task = args.tasks[0]
    per_run, start = {}, time.perf_counter()
    for method in args.methods:
        spec = RunSpec(
            task,
            method,
            0,
            args.budget,
            references[task],
            args.fidelity,
            args.low_step,
            str(args.data),
        )
        _, record = run_one(spec)
        per_run[method] = record["wall_s"]
        print(_progress_line(spec, record, time.perf_counter() - start), flush=True)
    runs = len(args.tasks) * args.seeds
    total = sum(per_run.values()) * runs
    print(
        f"Estimate for {len(args.tasks)} tasks x {len(args.methods)} methods x {args.seeds} "
        f"seeds, budget {args.budget}: {total / 3600:.1f} h of one core, about "
        f"{total / 3600 / max(1, args.workers):.1f} h on {args.workers} worker(s)."
    )
    return per_run


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _progress_line(spec: RunSpec, record: dict[str, Any], elapsed: float) -> str:
    regret = record["regret"]
    outcome = "no full training" if regret is None else f"regret {regret:.3f} pp"
    return (
        f"[{elapsed:6.0f} s] {spec.task:>6s} {spec.method:14s} seed {spec.seed:2d}: {outcome} "
        f"({record['n_trials']} trials, {record['n_complete']} full, {record['wall_s']:.1f} s)"
    )


# ---------------------------------------------------------------------------- report
def write_report(out_dir: Path, note: str) -> Path:
    """summary.md and, with plotly, the best-so-far plots, from every JSON under ``out_dir``."""
    return report(
        out_dir,
        note,
        datasets=TASKS,
        summary=write_summary,
        title="LCBench {label}: best validation accuracy at epoch 52 so far",
        labels=TASK_LABELS,
        yaxis_title="best val_accuracy at epoch 52 (%)",
    )


def _cell(value: float | None, n: int, total: int, *, digits: int = 3) -> str:
    """A regret in pp (or a rank); a count in brackets when only ``n`` of ``total`` runs had
    one."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + ("" if n == total else f" ({n})")


def task_table(per_method: dict[str, dict[str, Any]]) -> list[str]:
    """One row per method: mean regret at each checkpoint, runs above the reference, trials."""
    checkpoints = " | ".join(f"regret @{c}" for c in CHECKPOINTS)
    lines = [
        f"| method | budget | runs | {checkpoints} | above ref | trials | full | test bal. acc "
        "| s/run |",
        "|---|---|---|" + "---|" * len(CHECKPOINTS) + "---|---|---|---|---|",
    ]
    for method, results in sorted(per_method.items()):
        runs = results["runs"]
        cells = [method, str(results["budget"]), str(len(runs))]
        for checkpoint in CHECKPOINTS:
            mean, n = _mean_of(runs, f"regret_at_{checkpoint}")
            # Past the budget only runs stopped at the reference have a value: not a mean.
            beyond = checkpoint > results["budget"]
            cells.append("–" if beyond else _cell(mean, n, len(runs)))
        test, _ = _mean_of(runs, "test_balanced_accuracy_of_best")
        cells += [
            str(sum(bool(r["above_reference"]) for r in runs)),
            f"{_mean_of(runs, 'n_trials')[0]:.1f}",
            f"{_mean_of(runs, 'n_complete')[0]:.1f}",
            "–" if test is None else f"{test:.4f}",
            f"{_mean_of(runs, 'wall_s')[0]:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mean_ranks(
    all_results: AllResults, methods: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Each method's mean regret and mean rank over the tasks it ran on, per checkpoint.

    Per task, methods are ranked (1 = best, ties share) by their mean regret at the
    checkpoint over the runs that have one; a checkpoint no run reached, or past a method's
    budget, is left out. ``methods``: rank these only (variants would share their ranks).
    """
    regrets: dict[str, dict[int, list[float]]] = {}
    ranks: dict[str, dict[int, list[float]]] = {}
    for per_method in all_results.values():
        if methods is not None:
            per_method = {m: r for m, r in per_method.items() if m in methods}
        for checkpoint in CHECKPOINTS:
            key = f"regret_at_{checkpoint}"
            means = {
                m: _mean_of(r["runs"], key)[0]
                for m, r in per_method.items()
                if r["budget"] >= checkpoint
            }
            means = {m: v for m, v in means.items() if v is not None}
            for method, rank in _average_ranks(means).items():
                ranks.setdefault(method, {}).setdefault(checkpoint, []).append(rank)
                regrets.setdefault(method, {}).setdefault(checkpoint, []).append(means[method])
    return {
        method: {
            "tasks": sum(1 for per in all_results.values() if method in per),
            **{f"rank_at_{c}": float(np.mean(v)) for c, v in ranks[method].items()},
            **{f"regret_at_{c}": float(np.mean(v)) for c, v in regrets[method].items()},
        }
        for method in ranks
    }


def _on_common_seeds(per_method: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """The methods' results restricted to the seeds every one of them ran: a peer run on
    fewer seeds (the costly GP at budget 100) is compared on paired seeds, not on others."""
    seeds = set.intersection(*({r["seed"] for r in per_method[m]["runs"]} for m in methods))
    return {
        m: per_method[m] | {"runs": [r for r in per_method[m]["runs"] if r["seed"] in seeds]}
        for m in methods
    }


def protocol_table(all_results: AllResults, fidelity: str) -> list[str]:
    """Mean rank and regret among the protocol's methods alone (the issue's target), on the
    seeds all of them ran, at each budget all of them reached; and on how many tasks each has
    the lowest mean regret at the last of those budgets (ties count for each)."""
    methods = PROTOCOL_METHODS[fidelity]
    complete = {
        task: _on_common_seeds(per, methods)
        for task, per in all_results.items()
        if all(m in per for m in methods)
    }
    complete = {t: per for t, per in complete.items() if per[methods[0]]["runs"]}
    if not complete:
        return []
    checkpoints = [
        c
        for c in RANKED_CHECKPOINTS
        if all(per[m]["budget"] >= c for per in complete.values() for m in methods)
    ]
    last = checkpoints[-1]
    ranks = mean_ranks(complete, methods)
    lowest = dict.fromkeys(methods, 0)
    for per_method in complete.values():
        means = {m: _mean_of(per_method[m]["runs"], f"regret_at_{last}")[0] for m in methods}
        if all(v is not None for v in means.values()):
            best = min(means.values())
            for m in methods:
                lowest[m] += bool(np.isclose(means[m], best, rtol=0, atol=1e-9))
    seeds = [len(per[methods[0]]["runs"]) for per in complete.values()]
    runs = str(min(seeds)) if min(seeds) == max(seeds) else f"{min(seeds)}-{max(seeds)}"
    columns = " | ".join(f"rank @{c} | regret @{c}" for c in checkpoints)
    lines = [
        f"Protocol methods only ({', '.join(methods)}), over the {len(complete)} tasks where "
        f"all of them ran, on the seeds all of them ran ({runs} per task):",
        "",
        f"| method | {columns} | lowest regret @{last} on |",
        "|---|" + "---|---|" * len(checkpoints) + "---|",
    ]
    for method in sorted(methods, key=lambda m: ranks[m].get(f"rank_at_{last}", 99)):
        rank = ranks[method]
        cells = [
            f"{_cell(rank.get(f'rank_at_{c}'), 1, 1, digits=2)} | "
            f"{_cell(rank.get(f'regret_at_{c}'), 1, 1)}"
            for c in checkpoints
        ]
        lines.append(f"| {method} | {' | '.join(cells)} | {lowest[method]} tasks |")
    return lines


def write_summary(out_dir: Path, all_results: AllResults, note: str) -> Path:
    first = next((r for per in all_results.values() for r in per.values()), {})
    fidelity = first.get("fidelity", MONO)
    mode = (
        "mono-fidelity (every trial trains 52 epochs)"
        if fidelity == MONO
        else f"multi-fidelity (low step {first.get('low_step')}; cost = epochs / 52)"
    )
    lines = [
        f"# LCBench (YAHPO Gym surrogate): regret, {mode}",
        "",
        note,
        "",
        "Written by `benchmarks/lcbench.py`. Every method maximises the validation accuracy (%) "
        "at epoch 52 of one OpenML task. *regret @N*: mean over runs of the task's reference "
        "best (the best of 100,000 random configurations at epoch 52, "
        "`results/lcbench/reference_best.json`) minus the run's best after N equivalent full "
        "evaluations, in percentage points, clipped at 0; a count in brackets means only that "
        "many runs had a result by N (a budget below N, or, multi-fidelity, no trial that "
        "trained all 52 epochs). *above ref*: runs that beat the reference (regret 0). "
        "*trials* / *full*: trials started / trained all 52 epochs. *test bal. acc*: mean test "
        "balanced accuracy (0-1) at epoch 52 of each run's best configuration. s/run: mean "
        "wall time per run (one torch thread).",
        "",
    ]
    ranks = mean_ranks(all_results)
    reached = [c for c in CHECKPOINTS if any(f"rank_at_{c}" in r for r in ranks.values())]
    ranked = [c for c in RANKED_CHECKPOINTS if c in reached] or reached[-1:]
    order = sorted(ranks, key=lambda m: tuple(ranks[m].get(f"rank_at_{c}", 99) for c in ranked))
    regret_cols = " | ".join(f"regret @{c}" for c in reached)
    rank_cols = " | ".join(f"rank @{c}" for c in ranked)
    lines += [
        "## Mean over tasks",
        "",
        "Per task, methods are ranked (1 = best, ties share) by mean regret at the checkpoint; "
        "the table gives each method's mean rank and mean regret (pp) over the tasks it ran on, "
        "so rows with fewer tasks compare less.",
        "",
        f"| method | tasks | {rank_cols} | {regret_cols} | runs above ref |",
        "|---|---|" + "---|" * (len(ranked) + len(reached)) + "---|",
    ]
    for method in order:
        rank = ranks[method]
        above = sum(
            bool(r["above_reference"])
            for per in all_results.values()
            for r in per.get(method, {}).get("runs", [])
        )
        cells = [method, str(rank["tasks"])]
        cells += [_cell(rank.get(f"rank_at_{c}"), 1, 1, digits=2) for c in ranked]
        cells += [_cell(rank.get(f"regret_at_{c}"), 1, 1) for c in reached]
        lines.append("| " + " | ".join([*cells, str(above)]) + " |")
    lines += ["", *protocol_table(all_results, fidelity), ""]
    for task, per_method in all_results.items():
        lines += [f"## {TASK_LABELS[task]}", ""]
        if "reference_best" in first:
            reference = next(iter(per_method.values()))["reference_best"]
            found = [
                r["best"]
                for res in per_method.values()
                for r in res["runs"]
                if r["best"] is not None
            ]
            lines += [
                f"Reference best val_accuracy {reference:.4f}%; the best of any run here "
                f"{max(found, default=float('nan')):.4f}%.",
                "",
            ]
        lines += [*task_table(per_method), ""]
    ours = sorted({m for per in all_results.values() for m in per})
    lines += [
        "## Methods",
        "",
        *[f"- `{m}`: {METHODS[m].description}" for m in ours if m in METHODS],
        "",
    ]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    raise SystemExit(main())

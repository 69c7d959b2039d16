"""NAS-Bench-Graph: regret and evaluations to the optimum of each sampler on nine graph datasets.

For every (dataset, method, seed) an ordinary Optuna study maximises the *validation*
performance of a graph neural network of NAS-Bench-Graph (five ``suggest_categorical`` calls,
the link pattern and four operations, answered from the table; ``nbgraph_table.py``) until it
evaluates the table's best-by-validation architecture or spends its budget (100 evaluations by
default). Recorded per run:

* ``evals_to_optimum``: trials until the optimum was evaluated (the run stops there); ``null``
  when the budget ran out first (a *censored* run).
* ``best_at_N`` / ``regret_at_N`` for N in 25, 50, 100: the best validation value once N
  evaluations were spent and its regret, the table's best minus it (0 from the optimum on;
  ``null`` if the run's budget ended before N without the optimum). ``regret``: at the end.
* ``test_of_best`` / ``best_arch``: the test performance of the best-by-validation
  architecture found, i.e. of what the search would deploy (the search never sees it).
* ``distinct_archs``: distinct networks evaluated (isomorphic assignments are one network);
  ``missing``: trials of the all-skip networks, which the table lacks and which score the
  dataset's worst validation value (``nbgraph_table.make_objective``); ``curve``: the
  best-so-far curve as its improvement points ``[evaluations, best]``.

Why this protocol: NAS-Bench-Graph's own (Qin et al. 2022) searches on validation and reports
the test performance of the architecture found, as a real search must. Each dataset's optimum is
unique and only one or two of the 59,049 assignments reach it, so at budget 100 most runs are
censored and the regret is the measure that separates methods; evaluations to the optimum
mirror ``nb201.py``'s table. Every trial is a full evaluation (cost 1); no method is
multi-fidelity here (the light tables hold no learning curves).

Methods are a registry (``METHODS``) of name -> factory, the default ones in
``PROTOCOL_METHODS``; the acquisition variants of deepens (``deepens-ts``/``-pi``/``-ucb``/
``-ei``) are run on request for the defaults study. Runs execute in worker processes, each with
one torch thread, and each dataset/method JSON is rewritten as its runs finish, so ``--resume``
continues a long run. The JSON files and helpers are ``nb201_report.py``'s.

Run from the repository root, with ``pip install -e ".[nasbench-graph]"``::

    python benchmarks/nbgraph.py --quick      # 2 seeds, cora + proteins, budget 25: ~15 s
    python benchmarks/nbgraph.py              # 9 datasets x 7 methods x 20 seeds, budget 100
    python benchmarks/nbgraph.py --methods deepens-ts deepens-pi deepens-ucb deepens-ei
    python benchmarks/nbgraph.py --resume     # continue an interrupted run
    python benchmarks/nbgraph.py --report     # rebuild summary.md from the JSON files only
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from baselines import LocalSearchSampler  # noqa: E402
from baselines import RegularizedEvolutionSampler  # noqa: E402
from nb201 import PRETRAINING_ARCHITECTURES  # noqa: E402

# The stopper, checkpoint and worker plumbing of nb201.py, reused as they are.
from nb201 import _best_at  # noqa: E402
from nb201 import _resumable_runs  # noqa: E402
from nb201 import _StopAtOptimumOrBudget  # noqa: E402
from nb201 import _trust_region_option  # noqa: E402
from nb201 import _versions  # noqa: E402
from nb201 import run_and_record  # noqa: E402
from nb201_report import AllResults  # noqa: E402
from nb201_report import evals_stats  # noqa: E402
from nb201_report import with_sources  # noqa: E402
from nb201_report import write_report as report  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402
from nb201_table import add_run_options  # noqa: E402
from nbgraph_table import DATASET_LABELS  # noqa: E402
from nbgraph_table import DATASETS  # noqa: E402
from nbgraph_table import MISSING_ATTR  # noqa: E402
from nbgraph_table import ZERO_COST_METRICS  # noqa: E402
from nbgraph_table import NBGraphTable  # noqa: E402
from nbgraph_table import arch_key  # noqa: E402
from nbgraph_table import arch_string  # noqa: E402
from nbgraph_table import architecture_id  # noqa: E402
from nbgraph_table import architecture_of  # noqa: E402
from nbgraph_table import load_table  # noqa: E402
from nbgraph_table import make_objective  # noqa: E402
from nbgraph_table import pretraining_records  # noqa: E402
from nbgraph_table import relatedness  # noqa: E402
from nbgraph_table import search_space  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "nbgraph"
# Under results/tmp/, which git ignores: a smoke test never lands in a commit.
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "tmp" / "nbgraph-quick"
CHECKPOINTS = (25, 50, 100)
DEFAULT_BUDGET = 100
DEFAULT_SEEDS = 20
QUICK_BUDGET = 25  # Reaches the first checkpoint.
QUICK_SEEDS = 2
QUICK_DATASETS = ("cora", "proteins")  # A 9-operation space and the 5-operation one.
QUICK_METHODS = ("deepens", "tpe", "evolution", "local-search", "random")


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class RunSpec:
    """One run: everything a worker process needs, and nothing that does not pickle."""

    dataset: str
    method: str
    seed: int
    budget: int


@dataclass(frozen=True)
class Method:
    """How to build one search method for a run.

    Attributes:
        make_sampler: The Optuna sampler for a run.
        description: One line for the summary.
        record_metrics: Zero-cost metrics each trial records as ``zc_*`` user attrs. Only the
            methods that pretrain on them record them: deepens trains a head on every ``zc_*``
            attr, so plain deepens would otherwise no longer be plain.
        expected_s_per_trial: Rough cost on one CPU core, to start slow runs first.
    """

    make_sampler: Callable[[RunSpec], BaseSampler]
    description: str
    record_metrics: tuple[str, ...] = ()
    expected_s_per_trial: float = 0.01


def plain_deepens(
    acquisition: str | None = None, **options: Any
) -> Callable[[RunSpec], BaseSampler]:
    """DeepEnsembleSampler(seed=s), with the sampler's default acquisition unless given, and
    ``options`` (keyword arguments of the sampler)."""

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler

        chosen = {} if acquisition is None else {"acquisition": acquisition}
        return DeepEnsembleSampler(seed=spec.seed, **options, **chosen)

    return make


def pretrained_deepens(
    metrics: Sequence[str] = ZERO_COST_METRICS,
) -> Callable[[RunSpec], BaseSampler]:
    """DeepEnsembleSampler pretrained on the table's params and latency of 2,000 networks.

    As in ``nb201.py``: each seed draws its own 2,000 architectures and pretrains its own
    ensemble (simultaneous, replayed during the search), as a user would; the pretraining time
    is part of the run's wall time.
    """

    def make(spec: RunSpec) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler
        from optuna_deepens import PretrainingSet
        from optuna_deepens import pretrain

        table = load_table(spec.dataset)
        records = pretraining_records(
            table, PRETRAINING_ARCHITECTURES, seed=10_000 + spec.seed, metrics=metrics
        )
        pretraining_set = PretrainingSet.from_records(
            records, search_space=search_space(spec.dataset)
        )
        surrogate = pretrain(pretraining_set, mode="simultaneous", seed=spec.seed)
        return DeepEnsembleSampler(
            seed=spec.seed, pretrained=surrogate, replay_pretraining=True, n_startup_trials=10
        )

    return make


# Each dataset's related study: the most similar other dataset of the same space (citation
# graphs together, co-purchase and co-authorship pairs together). Proteins has another
# operation list, so no other dataset's study is of its space: it has no related study.
RELATED_SOURCES = {
    "cora": "citeseer",
    "citeseer": "cora",
    "pubmed": "cora",
    "cs": "physics",
    "physics": "cs",
    "photo": "computers",
    "computers": "photo",
    "arxiv": "pubmed",
}
RELATED_SOURCE_TRIALS = 100


def related_deepens(spec: RunSpec) -> BaseSampler:
    """DeepEnsembleSampler with ``related_studies=[a finished deepens study of 100 evaluations
    on RELATED_SOURCES[dataset]]``; the earlier study runs here and is not counted."""
    from optuna_deepens import DeepEnsembleSampler

    if spec.dataset not in RELATED_SOURCES:
        raise ValueError(f"{spec.dataset} has no related dataset of the same space.")
    source = load_table(RELATED_SOURCES[spec.dataset])
    earlier = optuna.create_study(
        direction="maximize", sampler=DeepEnsembleSampler(seed=10_000 + spec.seed)
    )
    earlier.optimize(make_objective(source), n_trials=RELATED_SOURCE_TRIALS)
    return DeepEnsembleSampler(seed=spec.seed, related_studies=[earlier])


def _evolution(spec: RunSpec) -> BaseSampler:
    return RegularizedEvolutionSampler(
        search_space(spec.dataset), seed=spec.seed, architecture_id=architecture_id
    )


def _local_search(spec: RunSpec) -> BaseSampler:
    return LocalSearchSampler(
        search_space(spec.dataset), seed=spec.seed, architecture_id=architecture_id
    )


METHODS: dict[str, Method] = {
    "deepens": Method(
        plain_deepens(),
        "DeepEnsembleSampler(seed=s), plain: no pretraining, default acquisition (ts)",
        expected_s_per_trial=0.4,
    ),
    "deepens-pretrain": Method(
        pretrained_deepens(),
        "DeepEnsembleSampler pretrained (simultaneous) on params and latency of 2,000 random "
        "architectures of the table",
        record_metrics=ZERO_COST_METRICS,
        expected_s_per_trial=0.5,
    ),
    # The defaults study: one entry per acquisition, pinned so that a change of the sampler's
    # default does not change what ``deepens-ts`` measured.
    **{
        f"deepens-{name}": Method(
            plain_deepens(name),
            f'DeepEnsembleSampler(acquisition="{name}"), plain: {label}',
            expected_s_per_trial=0.4,
        )
        for name, label in (
            ("ts", "Thompson sampling (the default, pinned)"),
            ("pi", "probability of improvement (the thesis's)"),
            ("ucb", "upper confidence bound"),
            ("ei", "expected improvement"),
        )
    },
    # The trust region's default (off) and the copula's, checked on this family too.
    "deepens-tr": Method(
        lambda spec: plain_deepens(**_trust_region_option(True))(spec),
        "deepens with trust_region=TrustRegion() (3 edits, patience 10)",
        expected_s_per_trial=0.4,
    ),
    "deepens-zscore": Method(
        plain_deepens(objective_scale="standardized"),
        'deepens with objective_scale="standardized" (z-scores, not the copula)',
        expected_s_per_trial=0.4,
    ),
    # The kernel on a space of choices alone (a GP over the one-hot choices, log EI on its
    # exact posterior): "auto" keeps the ensemble here; this arm measures whether it should.
    "deepens-kernel": Method(
        plain_deepens(numeric_surrogate="kernel"),
        'deepens with numeric_surrogate="kernel" (a GP over the one-hot choices, log EI)',
        expected_s_per_trial=0.2,
    ),
    "deepens-related": Method(
        related_deepens,
        "deepens warm-started with related_studies=[a finished deepens study of "
        f"{RELATED_SOURCE_TRIALS} evaluations on the related dataset: "
        + ", ".join(f"{k} <- {v}" for k, v in RELATED_SOURCES.items())
        + "] (not counted; proteins has none)",
        expected_s_per_trial=0.6,
    ),
    "random": Method(
        lambda spec: optuna.samplers.RandomSampler(seed=spec.seed),
        "optuna.samplers.RandomSampler (draws with replacement)",
    ),
    "tpe": Method(
        lambda spec: optuna.samplers.TPESampler(multivariate=True, seed=spec.seed),
        "optuna.samplers.TPESampler(multivariate=True)",
        expected_s_per_trial=0.03,
    ),
    "gp": Method(
        lambda spec: optuna.samplers.GPSampler(seed=spec.seed),
        "optuna.samplers.GPSampler",
        expected_s_per_trial=0.3,
    ),
    "evolution": Method(
        _evolution,
        "regularised evolution: 10 random, population 50, tournament 10, 1-edit mutation; "
        "never repeats a network (isomorphic assignments included)",
    ),
    "local-search": Method(
        _local_search,
        "local search (White et al. 2021): 10 random, first improvement, restarts; never "
        "repeats a network (isomorphic assignments included)",
    ),
}

PROTOCOL_METHODS = (
    "deepens",
    "deepens-pretrain",
    "gp",
    "tpe",
    "evolution",
    "local-search",
    "random",
)


# ---------------------------------------------------------------------------- one run
def run_study(spec: RunSpec, *, stop_at_optimum: bool = True) -> tuple[optuna.Study, dict]:
    """Run one search; return the study and its record (the JSON entry for this seed)."""
    table = load_table(spec.dataset)
    method = METHODS[spec.method]
    start = time.perf_counter()  # Building the sampler counts: pretraining is part of a run.
    study = optuna.create_study(direction="maximize", sampler=method.make_sampler(spec))
    objective = make_objective(table, record_metrics=method.record_metrics)
    stopper = _StopAtOptimumOrBudget(table.optimum, spec.budget, stop_at_optimum)
    study.optimize(objective, n_trials=int(spec.budget), callbacks=[stopper])
    wall = time.perf_counter() - start
    return study, _record(spec, table, study, stopper, wall)


def _record(
    spec: RunSpec,
    table: NBGraphTable,
    study: optuna.Study,
    stopper: _StopAtOptimumOrBudget,
    wall_s: float,
) -> dict[str, Any]:
    best = study.best_trial
    arch = architecture_of(best.params)
    entry = table.entry(*arch)
    record: dict[str, Any] = {"seed": spec.seed, "evals_to_optimum": stopper.reached_at}
    for checkpoint in CHECKPOINTS:
        best_then = _best_at(stopper, checkpoint)
        record[f"best_at_{checkpoint}"] = best_then
        record[f"regret_at_{checkpoint}"] = (
            None if best_then is None else _regret(table, best_then)
        )
    record.update(
        {
            "n_trials": len(study.trials),
            "cost": round(stopper.cost, 6),
            "best": best.value,
            "regret": _regret(table, float(best.value)),
            "test_of_best": None if entry is None else entry.test,
            "best_arch": arch_string(*arch),
            "distinct_archs": len({arch_key(*architecture_of(t.params)) for t in study.trials}),
            "missing": sum(bool(t.user_attrs.get(MISSING_ATTR)) for t in study.trials),
            "wall_s": round(wall_s, 2),
            "curve": stopper.curve,
        }
    )
    return with_sources(record, study.trials)


def _regret(table: NBGraphTable, best: float) -> float:
    """The table's best validation value minus ``best``, without float noise in the JSON."""
    return round(table.optimum - best, 12)


def run_one(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    """Worker entry point: one run, quiet logs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, record = run_study(spec)
    return spec, record


# ------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[*sorted(METHODS), "all"],
        default=None,
        help="default: PROTOCOL_METHODS; 'all' adds the acquisition variants of deepens",
    )
    parser.add_argument("--seeds", type=int, default=None, help="runs per method: seeds 0..N-1")
    parser.add_argument("--budget", type=int, default=None, help="evaluations per run")
    parser.add_argument(
        "--report", action="store_true", help="only rebuild summary.md from the JSON in --out"
    )
    parser.add_argument(
        "--relatedness",
        action="store_true",
        help="only write relatedness.md into --out: how far each dataset's best networks are "
        "best on another (what transfer between studies can use)",
    )
    add_run_options(
        parser,
        quick_help=f"{QUICK_SEEDS} seeds, {' + '.join(QUICK_DATASETS)}, budget {QUICK_BUDGET}, "
        f"methods {', '.join(QUICK_METHODS)}, into {QUICK_RESULTS_DIR.relative_to(REPO_ROOT)}/",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.datasets = args.datasets or list(QUICK_DATASETS if quick else DATASETS)
    if args.methods is None:
        args.methods = list(QUICK_METHODS if quick else PROTOCOL_METHODS)
    elif "all" in args.methods:
        args.methods = list(METHODS)
    args.seeds = args.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    args.budget = args.budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    args.out = args.out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    return args


def plan_runs(args: argparse.Namespace) -> tuple[list[RunSpec], dict[tuple[str, str], list]]:
    """The runs to do, slowest first, and the runs kept from earlier (``--resume``)."""
    specs, kept = [], {}
    for dataset in args.datasets:
        for method in args.methods:
            if method == "deepens-related" and dataset not in RELATED_SOURCES:
                continue  # Proteins: no other dataset searched its space.
            done = _resumable_runs(args, dataset, method, args.budget)
            kept[(dataset, method)] = list(done.values())
            specs += [
                RunSpec(dataset, method, seed, args.budget)
                for seed in range(args.seeds)
                if seed not in done
            ]
    specs.sort(key=lambda s: -METHODS[s.method].expected_s_per_trial * s.budget)
    return specs, kept


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        summary = write_report(args.out, "Rebuilt from the JSON files by `--report`.")
        print(f"summary: {summary}")
        return 0
    if args.relatedness:
        tables = {d: load_table(d) for d in RELATED_SOURCES}  # The node datasets: one space.
        print(f"relatedness: {write_relatedness(args.out, tables)}")
        return 0
    tables = {d: load_table(d) for d in args.datasets}  # Fail here, not in every worker.
    specs, runs = plan_runs(args)

    def info(spec: RunSpec) -> dict[str, Any]:
        table = tables[spec.dataset]
        return {
            "optimum": table.optimum,
            "test_of_optimum": table.test_of_optimum(),
            "max_test": table.max_test(),
            "n_architectures": len(table.entries),
            "description": METHODS[spec.method].description,
        }

    note = run_and_record(
        args,
        specs,
        runs,
        command="python benchmarks/nbgraph.py " + " ".join(argv or sys.argv[1:]),
        versions=_versions() | {"nas-bench-graph": _package_version()},
        info=info,
        run=run_one,
        progress=_progress_line,
    )
    summary = write_report(args.out, note)
    print(f"summary: {summary}")
    return 0


def _package_version() -> str:
    from importlib.metadata import version

    return version("nas-bench-graph")  # The module's own __version__ still says 1.3.


def _progress_line(spec: RunSpec, record: dict[str, Any], elapsed: float) -> str:
    found = record["evals_to_optimum"]
    outcome = (
        f"optimum at {found:g}"
        if found is not None
        else f"censored, regret {100 * record['regret']:.2f} pp"
    )
    return (
        f"[{elapsed:6.0f} s] {spec.dataset:9s} {spec.method:16s} seed {spec.seed:2d}: "
        f"{outcome} ({record['n_trials']} trials, {record['wall_s']:.1f} s)"
    )


# ---------------------------------------------------------------------------- report
def write_relatedness(out_dir: Path, tables: Mapping[str, NBGraphTable]) -> Path:
    """relatedness.md: for every ordered pair of ``tables``, where the source's top 1% of
    networks rank on the target, and the transfer pairs (``RELATED_SOURCES``) in full."""
    names = list(tables)
    pairs = {(t, s): relatedness(tables[t], tables[s]) for t in names for s in names if t != s}
    lines = [
        "# NAS-Bench-Graph: how far one dataset's best networks are best on another",
        "",
        "Written by `benchmarks/nbgraph.py --relatedness` from the tables. Percentiles run 0-1 "
        "over the networks both tables hold; a random network sits at 0.5 on average. A related "
        "study can lead a search to the target's best networks only where the source's best "
        "are near the top of the target too.",
        "",
        "Mean percentile on the target (row) of the source's (column) top 1% by validation:",
        "",
        "| target \\ source | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for target in names:
        cells = [
            "–" if source == target else f"{pairs[target, source].top_at_target:.2f}"
            for source in names
        ]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The transfer benchmark's pairs (`--methods deepens-related`):",
        "",
        "| target <- source | Spearman | source's top 1% on the target "
        "| target's best on the source |",
        "|---|---|---|---|",
    ]
    for target, source in RELATED_SOURCES.items():
        if (target, source) in pairs:
            r = pairs[target, source]
            lines.append(
                f"| {target} <- {source} | {r.spearman:.2f} | {r.top_at_target:.2f} | "
                f"{r.optimum_at_source:.3f} |"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "relatedness.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(out_dir: Path, note: str) -> Path:
    """summary.md and, with plotly, the best-so-far plots, from every JSON under ``out_dir``."""
    return report(
        out_dir,
        note,
        datasets=DATASETS,
        summary=write_summary,
        title="NAS-Bench-Graph {label}: best validation performance so far",
        labels=DATASET_LABELS,
        yaxis_title="best validation performance (fraction)",
        window=(0.05, 0.005),
    )


def _pp(value: float | None) -> str:
    """A regret (a fraction) in percentage points."""
    return "–" if value is None else f"{100 * value:.2f}"


def _mean_of(runs: Sequence[dict[str, Any]], key: str) -> tuple[float | None, int]:
    values = [r[key] for r in runs if r.get(key) is not None]
    return (float(np.mean(values)) if values else None), len(values)


def evals_cells(results: dict[str, Any]) -> list[str]:
    """``k/n reached | mean | median``: censored runs count as the budget (≥ marks a bound)."""
    stats = evals_stats(results)
    if stats is None:
        return ["0/0", "–", "–"]
    budget = float(results["budget"])
    found = [r["evals_to_optimum"] for r in results["runs"]]
    as_budget = [budget if v is None else v for v in found]
    as_inf = [math.inf if v is None else v for v in found]
    median = float(np.median(as_budget))
    median_bound = "≥ " if float(np.median(as_inf)) != median else ""
    mean_bound = "≥ " if stats.n_censored else ""
    return [
        f"{stats.n - stats.n_censored}/{stats.n}",
        f"{mean_bound}{stats.mean:.1f}",
        f"{median_bound}{median:g}",
    ]


def dataset_table(per_method: dict[str, dict[str, Any]]) -> list[str]:
    """One row per method: runs, evaluations to the optimum, regret at checkpoints, s/run."""
    checkpoints = " | ".join(f"regret @{c} (pp)" for c in CHECKPOINTS)
    lines = [
        f"| method | budget | runs | reached | mean evals | median evals | {checkpoints} | "
        "test of best (%) | s/run |",
        "|---|---|---|---|---|---|" + "---|" * len(CHECKPOINTS) + "---|---|",
    ]
    for method, results in sorted(per_method.items()):
        runs = results["runs"]
        cells = [method, str(results["budget"]), str(len(runs)), *evals_cells(results)]
        for checkpoint in CHECKPOINTS:
            mean, n = _mean_of(runs, f"regret_at_{checkpoint}")
            cells.append(_pp(mean) + ("" if mean is None or n == len(runs) else f" ({n})"))
        test, _ = _mean_of(runs, "test_of_best")
        wall, _ = _mean_of(runs, "wall_s")
        cells += ["–" if test is None else f"{100 * test:.2f}", f"{wall:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _average_ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = smallest value; ties share the mean of their ranks."""
    ordered = sorted(values.values())
    return {name: 1 + ordered.index(v) + (ordered.count(v) - 1) / 2 for name, v in values.items()}


def mean_ranks(all_results: AllResults) -> dict[str, dict[str, float]]:
    """Each method's mean rank over the datasets it ran on, by final regret and by evaluations.

    Per dataset, methods are ranked by their mean regret at the end of the run and by their
    mean evaluations to the optimum (censored runs as the budget); ties share ranks.
    """
    by_regret: dict[str, list[float]] = {}
    by_evals: dict[str, list[float]] = {}
    for per_method in all_results.values():
        regrets = {m: _mean_of(r["runs"], "regret")[0] for m, r in per_method.items()}
        evals = {m: s.mean for m, r in per_method.items() if (s := evals_stats(r)) is not None}
        ranked = {m: v for m, v in regrets.items() if v is not None}
        for method, rank in _average_ranks(ranked).items():
            by_regret.setdefault(method, []).append(rank)
        for method, rank in _average_ranks(evals).items():
            by_evals.setdefault(method, []).append(rank)
    return {
        method: {
            "regret": float(np.mean(ranks)),
            "evals": float(np.mean(by_evals.get(method, [math.nan]))),
            "datasets": len(ranks),
        }
        for method, ranks in by_regret.items()
    }


# Peers of the default sampler in the comparison with standard errors.
PEERS = ("gp", "tpe", "local-search", "evolution", "random")


def against_peers(
    all_results: AllResults, ours: str = "deepens", peers: Sequence[str] = PEERS
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per peer and dataset: the peer's mean final regret minus ours (pp; positive: ours lower)
    and the standard error of that difference (unpaired: seeds do not pair different samplers).

    Mean ranks say who is first; this says whether first is more than noise, since on most of
    these datasets the methods' means differ by less than their runs' spread.
    """

    def stats(runs: Sequence[dict[str, Any]]) -> tuple[float, float]:
        regrets = 100 * np.array([r["regret"] for r in runs if r.get("regret") is not None])
        return float(regrets.mean()), float(regrets.std(ddof=1) / math.sqrt(len(regrets)))

    table: dict[str, dict[str, tuple[float, float]]] = {}
    for dataset, per_method in all_results.items():
        if ours not in per_method or len(per_method[ours]["runs"]) < 2:
            continue
        mine, my_se = stats(per_method[ours]["runs"])
        for peer in peers:
            if peer in per_method and len(per_method[peer]["runs"]) >= 2:
                theirs, their_se = stats(per_method[peer]["runs"])
                table.setdefault(peer, {})[dataset] = (theirs - mine, math.hypot(my_se, their_se))
    return table


def _peer_lines(
    all_results: AllResults, ours: str = "deepens", peers: Sequence[str] = PEERS
) -> list[str]:
    table = against_peers(all_results, ours, peers)
    if not table:
        return []
    datasets = [d for d in all_results if any(d in row for row in table.values())]
    lines = [
        f"## `{ours}` against each peer, with standard errors",
        "",
        f"Per dataset: the peer's mean final regret minus `{ours}`'s (pp; positive: `{ours}` "
        "lower) ± the standard error of the difference. *ahead* / *behind*: the difference is "
        "more than two standard errors; *within noise* otherwise.",
        "",
        "| peer | " + " | ".join(datasets) + " | ahead | within noise | behind |",
        "|---|" + "---|" * (len(datasets) + 3),
    ]
    for peer, row in table.items():
        cells, verdicts = [], []
        for dataset in datasets:
            if dataset not in row:
                cells.append("–")
                continue
            diff, se = row[dataset]
            cells.append(f"{diff:+.2f} ± {se:.2f}")
            verdicts.append("ahead" if diff > 2 * se else "behind" if diff < -2 * se else "=")
        counts = [verdicts.count(v) for v in ("ahead", "=", "behind")]
        lines.append(
            f"| {peer} | " + " | ".join(cells) + " | " + " | ".join(map(str, counts)) + " |"
        )
    return [*lines, ""]


def write_summary(out_dir: Path, all_results: AllResults, note: str) -> Path:
    lines = [
        "# NAS-Bench-Graph: regret and evaluations to the optimum",
        "",
        note,
        "",
        "Written by `benchmarks/nbgraph.py`. Every method maximises the validation performance "
        "from the NAS-Bench-Graph table; the optimum is the table's best validation value. "
        "*reached*: runs that evaluated the optimum (a run stops there). Mean and median "
        "evaluations count a censored run as the budget, so with censored runs they are lower "
        "bounds (≥). *regret @N*: mean over runs of the table's best validation value minus "
        "the run's best after N evaluations, in percentage points (a run that found the "
        "optimum earlier counts 0; a count in brackets means only that many runs had a budget "
        "of N). *test of best*: mean test performance of each run's best-by-validation "
        "architecture. s/run: mean wall time per run (one torch thread).",
        "",
    ]
    for dataset, per_method in all_results.items():
        first = next(iter(per_method.values()))
        header = f"## {DATASET_LABELS[dataset]} (`{dataset}`)"
        lines += [header, ""]
        if "optimum" in first:
            lines += [
                f"{first['n_architectures']:,} architectures; best validation "
                f"{100 * first['optimum']:.2f}% (its test {100 * first['test_of_optimum']:.2f}%; "
                f"best test in the table {100 * first['max_test']:.2f}%).",
                "",
            ]
        lines += [*dataset_table(per_method), ""]
    ranks = mean_ranks(all_results)
    lines += [
        "## Mean rank over datasets",
        "",
        "Per dataset, methods are ranked (1 = best, ties share) by mean final regret and by mean "
        "evaluations to the optimum (censored as the budget); the table gives the mean over the "
        "datasets each method ran on, so rows with fewer datasets compare less.",
        "",
        "| method | mean rank (final regret) | mean rank (evaluations to optimum) | datasets |",
        "|---|---|---|---|",
    ]
    for method, rank in sorted(ranks.items(), key=lambda item: item[1]["regret"]):
        lines.append(
            f"| {method} | {rank['regret']:.2f} | {rank['evals']:.2f} | {rank['datasets']} |"
        )
    ours = sorted({m for per in all_results.values() for m in per})
    lines += ["", *_peer_lines(all_results)]
    # Transfer is judged against the same configuration cold, run on the same machine (seeded
    # runs of the ensemble do not repeat across CPUs, so both rows must come from one sample).
    lines += _peer_lines(all_results, ours="deepens-related", peers=("deepens",))
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

"""The best design at several budgets: one shared study against one study per budget.

Chapter 8 searches the attention designs at one latency (SwiftFormer-XS's), each design's width
matched to it. ``optuna_deepens.search_budgets`` generalises that to several budgets, either in
**one study whose first parameter is the budget** (``shared``: the ensemble's trunk carries what
a design taught at one budget to the others) or in **one study per budget** (``per_budget``,
the trials split evenly). This script measures which is cheaper, on two families:

* ``synthetic`` (``tests/budgeted.py``): chapter 8's structure. 625 designs (four edges, five
  operations); at a budget a design's width is matched to it and width adds accuracy with
  diminishing returns, so the best design changes with the budget (budgets 1, 4 and 8; 90
  evaluations in all).
* ``nb201`` (NAS-Bench-201 CIFAR-10, 200-epoch test accuracy): the budget is a latency bound at
  the table's 25th, 50th and 75th percentile, reported with ``trial.set_constraint``; only
  architectures within it count (150 evaluations in all). Needs ``--data`` (the table).

Per run and checkpoint (total evaluations, whatever the strategy): the mean over budgets of the
regret of the best feasible design found (a budget with none counts the family's floor), how
many budgets are at their optimum, and the evaluations until every budget is. ``per_budget``
is read as if its studies ran in turns (after ``n`` evaluations each study has had ``n / k``),
which is what a user with ``k`` workers, one per budget, would see. ``random`` (per budget) is
the floor.

Usage (results in ``results/budgets/``)::

    OMP_NUM_THREADS=1 python benchmarks/budgets.py --seeds 20  # 29 min on 2 shared cores
    OMP_NUM_THREADS=1 python benchmarks/budgets.py --quick   # smoke test, seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import concurrent.futures
from dataclasses import dataclass
import datetime
import json
from pathlib import Path
import statistics
import sys
import time
from typing import Any

import numpy as np
import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import budgeted  # noqa: E402
from nb201_table import DEFAULT_DATA  # noqa: E402
from nb201_table import load_table  # noqa: E402
from nb201_table import objective_column  # noqa: E402
from nb201_table import suggest_architecture  # noqa: E402
from provenance import cpu_model  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

from optuna_deepens import DeepEnsembleSampler  # noqa: E402
from optuna_deepens import search_budgets  # noqa: E402
from optuna_deepens.budgets import BUDGET_ATTR  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "budgets"
METHODS = ("deepens-shared", "deepens-per-budget", "random")
NB201_QUANTILES = (25, 50, 75)


@dataclass(frozen=True)
class Family:
    """A budgeted problem: its objective, budgets, optimum per budget and evaluations."""

    budgets: tuple[float, ...]
    optimum: dict[float, float]
    floor: float  # The regret of a budget with no feasible design is optimum - floor.
    n_trials: int
    objective: Callable[[optuna.Trial, float], float]


def synthetic_family(n_trials: int = 90) -> Family:
    return Family(
        budgets=budgeted.BUDGETS,
        optimum={b: budgeted.optimum(b)[0] for b in budgeted.BUDGETS},
        floor=min(budgeted.optimum(b)[0] for b in budgeted.BUDGETS) - 10.0,
        n_trials=n_trials,
        objective=budgeted.objective,
    )


def nb201_family(data: Path, n_trials: int = 150) -> Family:
    table = load_table(data)
    latency = table.columns["cifar10_latency_ms"]
    accuracy = table.columns[objective_column("cifar10")]
    bounds = tuple(round(float(np.percentile(latency, q)), 4) for q in NB201_QUANTILES)

    def objective(trial: optuna.Trial, bound: float) -> float:
        arch = suggest_architecture(trial)
        trial.set_constraint("latency", table.value(arch, "cifar10_latency_ms") - bound)
        return table.value(arch, objective_column("cifar10"))

    return Family(
        budgets=bounds,
        optimum={b: float(accuracy[latency <= b].max()) for b in bounds},
        floor=10.0,  # Chance accuracy on CIFAR-10.
        n_trials=n_trials,
        objective=objective,
    )


def make_family(name: str, data: Path, quick: bool) -> Family:
    if name == "synthetic":
        return synthetic_family(n_trials=12 if quick else 90)
    return nb201_family(data, n_trials=15 if quick else 150)


def run(family_name: str, method: str, seed: int, data: str, quick: bool) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import torch

    torch.set_num_threads(1)
    family = make_family(family_name, Path(data), quick)
    if method == "random":
        sampler = lambda: optuna.samplers.RandomSampler(seed=seed)  # noqa: E731
    else:
        sampler = lambda: DeepEnsembleSampler(seed=seed)  # noqa: E731
    strategy = "shared" if method == "deepens-shared" else "per_budget"
    start = time.perf_counter()
    result = search_budgets(
        family.objective,
        family.budgets,
        n_trials=family.n_trials,
        strategy=strategy,
        sampler=sampler,
    )
    wall = time.perf_counter() - start
    regrets, found = _curves(family, result.studies, strategy)
    all_found = next((n + 1 for n, k in enumerate(found) if k == len(family.budgets)), None)
    return {
        "seed": seed,
        "regret": [round(r, 5) for r in regrets],
        "found": found,
        "evals_to_all_optima": all_found,
        "trials_per_budget": _trials_per_budget(result.studies),
        "wall_s": round(wall, 2),
    }


def _curves(
    family: Family, studies: tuple[optuna.Study, ...], strategy: str
) -> tuple[list[float], list[int]]:
    """Mean regret over budgets and budgets at their optimum, after each evaluation."""
    if strategy == "shared":
        ordered = studies[0].trials
    else:  # The per-budget studies in turns: round r holds each study's r-th trial.
        per = [s.trials for s in studies]
        ordered = [t[r] for r in range(max(map(len, per))) for t in per if r < len(t)]
    best = {b: family.floor for b in family.budgets}
    regrets, found = [], []
    for trial in ordered:
        budget = trial.user_attrs[BUDGET_ATTR]
        feasible = all(v <= 0 for v in trial.constraints.values())
        if trial.value is not None and feasible:
            best[budget] = max(best[budget], trial.value)
        gaps = [family.optimum[b] - best[b] for b in family.budgets]
        regrets.append(float(np.mean(gaps)))
        found.append(sum(g <= 1e-9 for g in gaps))
    return regrets, found


def _trials_per_budget(studies: tuple[optuna.Study, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for study in studies:
        for trial in study.trials:
            key = f"{trial.user_attrs[BUDGET_ATTR]:g}"
            counts[key] = counts.get(key, 0) + 1
    return counts


# ---------------------------------------------------------------------------- report
def _checkpoints(n_trials: int) -> list[int]:
    return [n_trials // 3, 2 * n_trials // 3, n_trials]


def summary(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# The best design at several budgets: one shared study or one per budget",
        "",
        f"Written by `benchmarks/budgets.py` on {meta['date']}; commit `{meta['commit']}`; "
        f"CPU {meta['cpu']}, one torch thread per run. Cells are mean / median over seeds; "
        "regret is the mean over budgets of (optimum - best feasible found); 'at optimum' "
        "counts budgets whose optimum was found; evaluations to all optima count a run that "
        "missed one as the budget (>=, with (k/n) runs that found them all).",
    ]
    for name, family in results["families"].items():
        n_trials = family["n_trials"]
        lines += ["", f"## {name}: budgets {family['budgets']}, {n_trials} evaluations", ""]
        header = [f"regret @{c}" for c in _checkpoints(n_trials)]
        lines.append(
            "| method | runs | "
            + " | ".join(header)
            + f" | at optimum @{n_trials} | evals to all optima | s/run |"
        )
        lines.append("|---" * (len(header) + 5) + "|")
        for method, runs in family["runs"].items():
            cells = [
                _mean_median([r["regret"][c - 1] for r in runs]) for c in _checkpoints(n_trials)
            ]
            at = _mean_median([r["found"][-1] for r in runs], digits=2)
            reached = [r["evals_to_all_optima"] for r in runs]
            hits = sum(x is not None for x in reached)
            evals = _mean_median([x or n_trials for x in reached], digits=1)
            evals = f"{'' if hits == len(runs) else '≥ '}{evals} ({hits}/{len(runs)})"
            wall = _mean_median([r["wall_s"] for r in runs], digits=1)
            lines.append(
                f"| {method} | {len(runs)} | "
                + " | ".join(cells)
                + f" | {at} | {evals} | {wall} |"
            )
    return "\n".join(lines) + "\n"


def _mean_median(values: list[float], digits: int = 4) -> str:
    return f"{statistics.mean(values):.{digits}f} / {statistics.median(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=("synthetic", "nb201"), default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="nb201.csv")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 seeds, a few trials")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    families = args.families or ["synthetic"] + (["nb201"] if args.data.exists() else [])
    seeds = 2 if args.quick else args.seeds
    jobs = [(f, m, s) for f in families for m in args.methods for s in range(seeds)]
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": f"{git_commit()}{'-dirty' if git_dirty('optuna_deepens') else ''}",
            "cpu": cpu_model(),
            "command": " ".join(sys.argv),
        },
        "families": {},
    }
    for name in families:
        family = make_family(name, args.data, args.quick)
        results["families"][name] = {
            "budgets": list(family.budgets),
            "optimum": {f"{b:g}": v for b, v in family.optimum.items()},
            "n_trials": family.n_trials,
            "runs": {m: [] for m in args.methods},
        }
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {
            pool.submit(run, f, m, s, str(args.data), args.quick): (f, m, s) for f, m, s in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            f, m, s = futures[future]
            record = future.result()
            results["families"][f]["runs"][m].append(record)
            print(
                f"{f:9s} {m:18s} seed {s:2d}: regret {record['regret'][-1]:.4f} "
                f"({record['wall_s']} s)",
                flush=True,
            )
    for family in results["families"].values():
        for runs in family["runs"].values():
            runs.sort(key=lambda r: r["seed"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "summary.md").write_text(summary(results))
    print(summary(results))


if __name__ == "__main__":
    main()

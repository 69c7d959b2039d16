"""Simultaneous pretraining on NAS-Bench-201: head start, metric count, mode, and its cost.

Three measurements (thesis 5.3.1, Figures 5.5-5.7, Table 5.2), written to
``benchmarks/results/pretraining/``:

* ``time``: seconds to pretrain the 6-member ensemble on 2,000 architectures and 3 metrics,
  on this machine (median of 3, one torch thread, as the sampler runs).
* ``spearman``: Spearman rank correlation between the surrogate's prediction of the objective
  and the truth over all 15,625 cells, once the ensemble was fitted on 10, 20, 50 and 100
  evaluations, with and without pretraining (10 seeds, CIFAR-10 and ImageNet16-120).
* ``ablation``: evaluations to the optimum with 0, 1, 2 and 3 metrics, simultaneous against
  sequential, 20 seeds on CIFAR-10; these are ordinary ``nb201.py`` methods whose JSON lands in
  ``results/nb201/cifar10/`` beside the main table, and this script tabulates them.

Run from the repository root::

    python benchmarks/pretraining.py                 # all three (about 1 h on 2 cores)
    python benchmarks/pretraining.py --parts time spearman --seeds 5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import concurrent.futures
import datetime
import json
import multiprocessing
from pathlib import Path
import statistics
import sys
import time
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nb201  # noqa: E402
from nb201_report import evals_stats  # noqa: E402
from nb201_report import load_results  # noqa: E402
from nb201_report import results_path  # noqa: E402
from nb201_report import stats_cells  # noqa: E402
from nb201_table import DATASET_LABELS  # noqa: E402
from nb201_table import DEFAULT_DATA  # noqa: E402
from nb201_table import EDGE_NAMES  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402
from nb201_table import load_table  # noqa: E402
from nb201_table import make_objective  # noqa: E402
from nb201_table import objective_column  # noqa: E402
from nb201_table import pretraining_records  # noqa: E402
from nb201_table import search_space  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "results" / "pretraining"
CHECKPOINTS = (10, 20, 50, 100)
SPEARMAN_DATASETS = ("cifar10", "imagenet16")
SPEARMAN_METHODS = ("deepens", "deepens-pretrain")
# Table 5.2 / Figure 5.7: (number of metrics, mode) -> nb201.py method.
ABLATION = {
    (0, "-"): "deepens",
    (1, "simultaneous"): "deepens-pretrain-1",
    (2, "simultaneous"): "deepens-pretrain-2",
    (3, "simultaneous"): "deepens-pretrain",
    (2, "sequential"): "deepens-pretrain-seq-2",
    (3, "sequential"): "deepens-pretrain-seq-3",
}
THESIS_TABLE_5_2 = {1: 113.4, 2: 96.0, 3: 78.9}


# --------------------------------------------------------------------------------- time
def time_pretraining(data: Path, repeats: int = 3) -> dict[str, Any]:
    import torch

    from optuna_deepens import PretrainingSet
    from optuna_deepens import pretrain

    torch.set_num_threads(1)
    table = load_table(data)
    records = pretraining_records(table, "cifar10", nb201.PRETRAINING_ARCHITECTURES, seed=0)
    pretraining_set = PretrainingSet.from_records(records, search_space=search_space())
    seconds = []
    for seed in range(repeats):
        start = time.perf_counter()
        surrogate = pretrain(pretraining_set, seed=seed)
        seconds.append(time.perf_counter() - start)
    return {
        "architectures": len(pretraining_set),
        "metrics": list(pretraining_set.metric_names),
        "members": surrogate.config.n_members,
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2),
        "final_loss": surrogate.final_loss,
    }


# ----------------------------------------------------------------------------- spearman
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_run(job: tuple[str, str, int, str]) -> dict[str, Any]:
    """One study of 100 evaluations; the surrogate's rank correlation at each checkpoint."""
    dataset, method, seed, data = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_table(data)
    spec = nb201.RunSpec(dataset, method, seed, max(CHECKPOINTS), data)
    definition = nb201.METHODS[method]
    sampler = definition.make_sampler(spec)
    truth = table.columns[objective_column(dataset)]
    every_cell = [dict(zip(EDGE_NAMES, arch)) for arch in table.architectures]
    found: dict[int, float] = {}

    def measure(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # The fit made to sample trial n+1 used the first n evaluations.
        fitted_on = len(study.trials) - 1
        if fitted_on in CHECKPOINTS:
            prediction = sampler.predict_objective(every_cell).mean(axis=0)
            found[fitted_on] = round(spearman(prediction, truth), 4)

    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = make_objective(table, dataset, record_metrics=definition.record_metrics)
    study.optimize(objective, n_trials=max(CHECKPOINTS) + 1, callbacks=[measure])
    return {"dataset": dataset, "method": method, "seed": seed, "spearman": found}


def spearman_all(data: Path, seeds: int, workers: int) -> list[dict[str, Any]]:
    jobs = [
        (dataset, method, seed, str(data))
        for dataset in SPEARMAN_DATASETS
        for method in SPEARMAN_METHODS
        for seed in range(seeds)
    ]
    context = multiprocessing.get_context("spawn")
    results = []
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=nb201._init_worker
    ) as pool:
        for result in pool.map(spearman_run, jobs):
            print(f"spearman {result}", flush=True)
            results.append(result)
    return results


def spearman_table(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| dataset | surrogate | " + " | ".join(f"after {n}" for n in CHECKPOINTS) + " |",
        "|---|---|" + "---|" * len(CHECKPOINTS),
    ]
    for dataset in SPEARMAN_DATASETS:
        for method in SPEARMAN_METHODS:
            runs = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            if not runs:
                continue
            cells = []
            for n in CHECKPOINTS:
                values = [r["spearman"][n] for r in runs if n in r["spearman"]]
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–")
            label = "pretrained" if "pretrain" in method else "not pretrained"
            lines.append(f"| {DATASET_LABELS[dataset]} | {label} | " + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------- ablation
def run_ablation(data: Path, seeds: int, workers: int, budget: float) -> None:
    methods = list(ABLATION.values())
    nb201.main(
        [
            "--data", str(data), "--datasets", "cifar10", "--methods", *methods,
            "--seeds", str(seeds), "--budget", str(budget), "--workers", str(workers),
            "--resume",
        ]
    )  # fmt: skip


def ablation_table(results_dir: Path) -> list[str]:
    lines = [
        "| metrics | mode | mean | std | min | max | censored/runs | thesis (Table 5.2) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (n_metrics, mode), method in ABLATION.items():
        payload = load_results(results_path(results_dir, "cifar10", method))
        stats = evals_stats(payload) if payload else None
        thesis = THESIS_TABLE_5_2.get(n_metrics, "–") if mode != "sequential" else "–"
        lines.append(f"| {n_metrics} | {mode} | {stats_cells(stats)} | {thesis} |")
    return lines


# --------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--parts", nargs="+", choices=("time", "spearman", "ablation"),
        default=["time", "spearman", "ablation"],
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=20, help="runs per ablation method")
    parser.add_argument("--spearman-seeds", type=int, default=10)
    parser.add_argument("--budget", type=float, default=nb201.DEFAULT_BUDGET)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": nb201._commit_label(),
    }
    if "time" in args.parts:
        timing = {**stamp, **time_pretraining(args.data)}
        (OUT / "time.json").write_text(json.dumps(timing, indent=1) + "\n")
        print(f"pretraining time: {timing}", flush=True)
    if "spearman" in args.parts:
        results = spearman_all(args.data, args.spearman_seeds, args.workers)
        payload = {**stamp, "seeds": args.spearman_seeds, "runs": results}
        (OUT / "spearman.json").write_text(json.dumps(payload, indent=1) + "\n")
    if "ablation" in args.parts:
        run_ablation(args.data, args.seeds, args.workers, args.budget)
    write_summary(stamp)
    return 0


def write_summary(stamp: dict[str, Any]) -> Path:
    lines = [
        "# Simultaneous pretraining on NAS-Bench-201",
        "",
        f"Written {stamp['date']} at commit {stamp['commit']} by `python "
        "benchmarks/pretraining.py`.",
        "",
    ]
    timing_path = OUT / "time.json"
    if timing_path.is_file():
        t = json.loads(timing_path.read_text())
        lines += [
            "## Pretraining time",
            "",
            f"{t['architectures']} architectures x {t['members']} members, metrics "
            f"{', '.join(t['metrics'])}: median {t['median_s']} s of {t['seconds']} "
            f"(one torch thread; measured {t['date']}).",
            "",
        ]
    spearman_path = OUT / "spearman.json"
    if spearman_path.is_file():
        s = json.loads(spearman_path.read_text())
        runs = [
            {**r, "spearman": {int(k): v for k, v in r["spearman"].items()}} for r in s["runs"]
        ]
        lines += [
            "## Rank correlation of the surrogate with the truth (all 15,625 cells)",
            "",
            f"Mean ± std over {s['seeds']} seeds, after the ensemble was fitted on N "
            "evaluations (Figures 5.5-5.6).",
            "",
            *spearman_table(runs),
            "",
        ]
    lines += [
        "## Evaluations to the optimum by number of metrics and mode (CIFAR-10)",
        "",
        "Table 5.2 / Figure 5.7; from `results/nb201/cifar10/<method>.json`.",
        "",
        *ablation_table(nb201.RESULTS_DIR),
        "",
    ]
    path = OUT / "summary.md"
    path.write_text("\n".join(lines))
    print(f"summary: {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(main())

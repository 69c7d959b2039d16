"""Multi-fidelity on NAS-Bench-201: four configurations and two schedules (thesis 5.3.2).

Compares, with cost in equivalent full evaluations (12-epoch runs cost 12/200):

* mono-fidelity (``deepens``), multi-fidelity (``deepens-mf``: one GP over choices and
  fidelity, the default; ``deepens-mf-ensemble``: the thesis's ensemble), pretraining
  (``deepens-pretrain``) and both (``deepens-pretrain-mf``): Figures 5.8, 5.9 and 5.11;
* promotion (the default) against the thesis's fixed p=5/q=3/f=10 schedule
  (``deepens-mf-fixed``, ``deepens-pretrain-mf-fixed``).

The runs are ordinary ``nb201.py`` methods, so their JSON lands in ``results/nb201/`` beside
the main table and ``--resume`` adds seeds later; this script runs them and writes
``results/multifidelity/summary.md`` and ``best_so_far_<dataset>.html`` (plotly).

Run from the repository root::

    python benchmarks/multifidelity.py                # 20 seeds, CIFAR-10 and ImageNet16-120
    python benchmarks/multifidelity.py --seeds 10 --datasets cifar10
    python benchmarks/multifidelity.py --report-only  # tables and plots from the JSON
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import datetime
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nb201  # noqa: E402
from nb201_report import evals_stats  # noqa: E402
from nb201_report import load_results  # noqa: E402
from nb201_report import results_path  # noqa: E402
from nb201_report import stats_cells  # noqa: E402
from nb201_report import write_plots  # noqa: E402
from nb201_table import DATASET_LABELS  # noqa: E402
from nb201_table import DATASETS  # noqa: E402
from nb201_table import DEFAULT_DATA  # noqa: E402
from nb201_table import REPO_ROOT  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "results" / "multifidelity"
CONFIGURATIONS = {
    "deepens": "mono-fidelity, no pretraining",
    "deepens-mf": "multi-fidelity (promotion), one GP over choices and fidelity",
    "deepens-mf-ensemble": "multi-fidelity (promotion), the ensemble (the thesis's model)",
    "deepens-pretrain": "pretraining, mono-fidelity",
    "deepens-pretrain-mf": "pretraining + multi-fidelity (promotion), the ensemble",
    "deepens-mf-fixed": "multi-fidelity, fixed p=5/q=3/f=10 schedule, one GP",
    "deepens-pretrain-mf-fixed": "pretraining + multi-fidelity, fixed schedule",
}
MULTI_FIDELITY_BUDGET = 60  # Equivalent full evaluations; 12-epoch trials make runs long.


def run(args: argparse.Namespace) -> None:
    budgets = [f"{method}={MULTI_FIDELITY_BUDGET}" for method in CONFIGURATIONS if "-mf" in method]
    argv = [
        "--data", str(args.data), "--datasets", *args.datasets,
        "--methods", *CONFIGURATIONS, "--seeds", str(args.seeds),
        "--workers", str(args.workers), "--resume",
    ]  # fmt: skip
    for budget in budgets:
        argv += ["--method-budget", budget]
    nb201.main(argv)


def table(dataset: str) -> list[str]:
    lines = [
        f"### {DATASET_LABELS[dataset]}",
        "",
        "| method | configuration | budget | mean | std | min | max | censored/runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, label in CONFIGURATIONS.items():
        payload = load_results(results_path(nb201.RESULTS_DIR, dataset, method))
        stats = evals_stats(payload) if payload else None
        budget = f"{float(payload['budget']):g}" if payload else "–"
        lines.append(f"| `{method}` | {label} | {budget} | {stats_cells(stats)} |")
    return lines + [""]


def write_summary(datasets: Sequence[str]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Multi-fidelity on NAS-Bench-201",
        "",
        f"Written {now} at commit {nb201._commit_label()} by `python "
        "benchmarks/multifidelity.py`. Equivalent full evaluations to the optimum (a 12-epoch "
        "run costs 0.06); censored runs count as their budget, so those means are lower "
        "bounds (≥).",
        "",
    ]
    results = {}
    for dataset in datasets:
        lines += table(dataset)
        results[dataset] = {
            method: payload
            for method in CONFIGURATIONS
            if (payload := load_results(results_path(nb201.RESULTS_DIR, dataset, method)))
        }
    plots = write_plots(OUT, results)
    if plots:
        lines += ["Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in plots), ""]
    path = OUT / "summary.md"
    path.write_text("\n".join(lines))
    print(f"summary: {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--datasets", nargs="+", choices=DATASETS, default=["cifar10", "imagenet16"]
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        run(args)
    write_summary(args.datasets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Results of the NAS-Bench-201 benchmark: JSON files, the thesis-style tables and plots.

Kept apart from the runner so that a summary can be rebuilt from the JSON files alone (for
instance after runs made on several machines were copied into one directory).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Any
import warnings

from nb201_table import DATASET_LABELS
from nb201_table import DATASETS
import numpy as np

CHECKPOINTS = (100, 200)  # Table 5.4's "best after N evaluations".
THESIS_METHOD = "Thesis (pretrained, multi-fidelity)"

# The thesis's published rows (20 runs each). Table 5.3: min, max, mean, std of evaluations to
# the optimum. Table 5.4: mean best test accuracy after 100 and 200 evaluations, for CIFAR-10,
# CIFAR-100 and ImageNet16-120. "Random", "Evolution", "BANANAS" and "Local search" came from
# NASZilla; the thesis's own method uses pretraining and multi-fidelity.
THESIS_TABLE_5_3: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "cifar10": {
        "Random": (280, 13690, 7717.0, 4498.8),
        "Evolution": (20, 1000, 250.0, 247.41),
        "BANANAS": (20, 470, 128.5, 118.59),
        "Local search": (30, 190, 99.0, 56.82),
        THESIS_METHOD: (36, 132, 78.9, 25.45),
    },
    "cifar100": {
        "Random": (520, 14690, 7141.5, 4137.08),
        "Evolution": (40, 650, 247.5, 154.2),
        "BANANAS": (40, 310, 101.0, 54.49),
        "Local search": (20, 490, 118.5, 96.4),
        THESIS_METHOD: (18, 96, 53.7, 24.03),
    },
}
THESIS_TABLE_5_4: dict[int, dict[str, tuple[float, float, float]]] = {
    100: {
        "Random": (93.70, 70.94, 45.44),
        "Local search": (94.26, 73.15, 46.09),
        "Evolution": (94.20, 72.70, 46.03),
        "BANANAS": (94.15, 73.28, 46.46),
        THESIS_METHOD: (94.36, 73.51, 47.19),
    },
    200: {
        "Random": (93.86, 71.78, 45.70),
        "Local search": (94.37, 73.48, 46.21),
        "Evolution": (94.24, 73.07, 46.30),
        "BANANAS": (94.20, 73.43, 46.51),
        THESIS_METHOD: (94.37, 73.51, 47.31),
    },
}

AllResults = dict[str, dict[str, dict[str, Any]]]  # dataset -> method -> JSON payload


@dataclass(frozen=True)
class MethodInfo:
    """What the report needs to know of a method: a line of description, its thesis row."""

    description: str
    thesis_row: str | None = None


# ---------------------------------------------------------------------------- JSON files
def results_path(out_dir: Path, dataset: str, method: str) -> Path:
    return out_dir / dataset / f"{method}.json"


def load_results(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_results(
    out_dir: Path,
    dataset: str,
    method: str,
    budget: float,
    runs: Sequence[dict[str, Any]],
    meta: Mapping[str, Any],
) -> Path:
    """Rewrite one dataset/method file, runs sorted by seed (called after every run)."""
    path = results_path(out_dir, dataset, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "dataset": dataset,
        "method": method,
        "budget": int(budget) if float(budget).is_integer() else budget,
        "runs": sorted(runs, key=lambda r: r["seed"]),
        **meta,
    }
    path.write_text(_dumps(payload))
    return path


def _dumps(payload: dict[str, Any]) -> str:
    """Indented JSON with one line per run: readable, and diffs show which seeds changed."""
    runs = payload["runs"]
    text = json.dumps({**payload, "runs": ["@RUNS@"]}, indent=1)
    lines = ",\n  ".join(json.dumps(run, separators=(",", ":")) for run in runs)
    return text.replace('"@RUNS@"', lines if runs else "") + "\n"


def collect_results(out_dir: Path, datasets: Sequence[str] = DATASETS) -> AllResults:
    """Every dataset/method JSON under ``out_dir``, so the summary covers earlier invocations.

    ``datasets``: the benchmark's datasets, in report order (NAS-Bench-201's by default).
    """
    found: AllResults = {}
    for dataset in datasets:
        for path in sorted((out_dir / dataset).glob("*.json")):
            results = load_results(path)
            if results and results.get("runs"):
                found.setdefault(dataset, {})[results["method"]] = results
    return found


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class EvalsStats:
    """Table 5.3 statistics; censored runs count as the budget, so they are lower bounds."""

    n: int
    n_censored: int
    min: float
    max: float
    mean: float
    std: float  # Population std (ddof=0).


def evals_stats(results: dict[str, Any]) -> EvalsStats | None:
    runs = results["runs"]
    if not runs:
        return None
    budget = float(results["budget"])
    values = np.array(
        [budget if r["evals_to_optimum"] is None else r["evals_to_optimum"] for r in runs],
        dtype=float,
    )
    return EvalsStats(
        n=len(runs),
        n_censored=sum(r["evals_to_optimum"] is None for r in runs),
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        std=float(values.std()),
    )


def mean_best_at(results: dict[str, Any], checkpoint: int) -> tuple[float | None, int]:
    """Mean best after ``checkpoint`` evaluations over the runs that got there, and their count."""
    values = [r.get(f"best_at_{checkpoint}") for r in results["runs"]]
    values = [v for v in values if v is not None]
    return (float(np.mean(values)) if values else None), len(values)


# ------------------------------------------------------------------------------ tables
def _row_order(
    published: Sequence[str], ours: Sequence[str], methods: Mapping[str, MethodInfo]
) -> list[tuple[str, str]]:
    """Each published row followed by our method(s) compared with it, then our other rows."""
    order: list[tuple[str, str]] = []
    placed: set[str] = set()
    for name in published:
        order.append(("published", name))
        for method in ours:
            info = methods.get(method)
            if info is not None and info.thesis_row == name:
                order.append(("ours", method))
                placed.add(method)
    order += [("ours", m) for m in ours if m not in placed]
    return order


def table_5_3(all_results: AllResults, methods: Mapping[str, MethodInfo]) -> list[str]:
    """Evaluations to the optimum per dataset, our rows beside the thesis's."""
    lines = []
    for dataset in DATASETS:
        ours = all_results.get(dataset, {})
        if not ours:
            continue
        published = THESIS_TABLE_5_3.get(dataset, {})
        lines += [
            f"**{DATASET_LABELS[dataset]}**",
            "",
            "| method | min | max | mean | std | runs | censored (counted as budget) |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, name in _row_order(list(published), sorted(ours), methods):
            if kind == "published":
                lo, hi, mean, std = published[name]
                lines.append(
                    f"| {name} *(published)* | {lo:g} | {hi:g} | {mean:g} | {std:g} | 20 | – |"
                )
            elif (stats := evals_stats(ours[name])) is not None:
                lines.append(_stats_row(name, ours[name]["budget"], stats))
        lines.append("")
    return lines


def stats_cells(stats: EvalsStats | None) -> str:
    """``mean | std | min | max | censored/runs`` cells; ``≥`` marks censored lower bounds."""
    if stats is None:
        return "– | – | – | – | 0/0"
    bound = "≥ " if stats.n_censored else ""
    return (
        f"{bound}{stats.mean:.1f} | {stats.std:.1f} | {stats.min:g} | {bound}{stats.max:g} | "
        f"{stats.n_censored}/{stats.n}"
    )


def _stats_row(method: str, budget: float, stats: EvalsStats) -> str:
    bound = "≥ " if stats.n_censored else ""
    low = "≥ " if stats.n_censored == stats.n else ""
    return (
        f"| **{method}** (ours, budget {budget}) | {low}{stats.min:.0f} | "
        f"{bound}{stats.max:.0f} | {bound}{stats.mean:.1f} | {stats.std:.1f} | "
        f"{stats.n} | {stats.n_censored} |"
    )


def table_5_4(all_results: AllResults, methods: Mapping[str, MethodInfo]) -> list[str]:
    """Mean best test accuracy after 100 and 200 evaluations, our rows beside the thesis's."""
    labels = [DATASET_LABELS[d] for d in DATASETS]
    lines = [
        f"| method | queries | {' | '.join(labels)} |",
        "|---|---|" + "---|" * len(DATASETS),
    ]
    ours = sorted({m for per in all_results.values() for m in per})
    for checkpoint in CHECKPOINTS:
        published = THESIS_TABLE_5_4[checkpoint]
        for kind, name in _row_order(list(published), ours, methods):
            if kind == "published":
                cells = [f"{v:.2f}" for v in published[name]]
                lines.append(f"| {name} *(published)* | {checkpoint} | {' | '.join(cells)} |")
            else:
                cells = [_best_cell(all_results, d, name, checkpoint) for d in DATASETS]
                lines.append(f"| **{name}** (ours) | {checkpoint} | {' | '.join(cells)} |")
    return lines


def _best_cell(all_results: AllResults, dataset: str, method: str, checkpoint: int) -> str:
    results = all_results.get(dataset, {}).get(method)
    if not results:
        return "–"
    mean, n = mean_best_at(results, checkpoint)
    if mean is None:
        return "–"
    total = len(results["runs"])
    return f"{mean:.2f}" + ("" if n == total else f" ({n}/{total} runs)")


def write_summary(
    out_dir: Path, all_results: AllResults, methods: Mapping[str, MethodInfo], note: str
) -> Path:
    ours = sorted({m for per in all_results.values() for m in per})
    lines = [
        "# NAS-Bench-201: evaluations to the optimum",
        "",
        note,
        "",
        "Written by `benchmarks/nb201.py`. Optimum = the table's best 200-epoch test accuracy "
        "(CIFAR-10 94.3733, CIFAR-100 73.5133, ImageNet16-120 47.3111). Cost is in equivalent "
        "full evaluations: a full trial costs 1, a 12-epoch trial 0.06. Rows marked *published* "
        "are copied from the thesis (20 runs each); its own method there is pretrained and "
        "multi-fidelity like our `deepens-pretrain-mf`, while `deepens` is the plain sampler.",
        "",
        "## Evaluations to reach the optimum (thesis Table 5.3)",
        "",
        "A censored run (budget spent first) counts as the budget, so with censored runs our "
        "max and mean are lower bounds (marked ≥). Std is the population std over runs.",
        "",
        *table_5_3(all_results, methods),
        "## Mean best test accuracy after 100 and 200 evaluations (thesis Table 5.4)",
        "",
        "A run that found the optimum earlier counts as the optimum. Runs whose budget was "
        "below the checkpoint without finding the optimum are left out (shown as n/total).",
        "",
        *table_5_4(all_results, methods),
        "",
        "## Methods",
        "",
        *[f"- `{m}`: {methods[m].description}" for m in ours if m in methods],
        "",
    ]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------------------- plots
def write_plots(
    out_dir: Path,
    all_results: AllResults,
    *,
    title: str = "NAS-Bench-201 {label}: best test accuracy so far",
    labels: Mapping[str, str] = DATASET_LABELS,
    yaxis_title: str = "best 200-epoch test accuracy (%)",
    window: tuple[float, float] = (3.0, 0.3),
) -> list[Path]:
    """Best-so-far vs cost per dataset: mean line and min-max band per method (plotly).

    The defaults are NAS-Bench-201's; another benchmark passes its ``title`` (``{label}`` is
    the dataset's label), ``labels``, axis title and the y ``window`` below and above the
    optimum, in the units of its values.
    """
    try:
        import plotly.graph_objects as go
    except ImportError:
        print("plotly is not installed (pip install 'optuna-deepens[plots]'): skipping plots.")
        return []
    paths = []
    for dataset, per_method in all_results.items():
        figure = go.Figure()
        for method, results in sorted(per_method.items()):
            _add_curve(figure, go, method, results)
        figure.update_layout(
            title=title.format(label=labels[dataset]),
            xaxis_title="cost (equivalent full evaluations)",
            yaxis_title=yaxis_title,
        )
        optimum = next((r.get("optimum") for r in per_method.values() if "optimum" in r), None)
        if optimum is not None:  # The last few tenths are where methods differ.
            figure.add_hline(y=optimum, line_dash="dot", annotation_text="optimum")
            figure.update_yaxes(range=[optimum - window[0], optimum + window[1]])
        path = out_dir / f"best_so_far_{dataset}.html"
        figure.write_html(path, include_plotlyjs="cdn")
        paths.append(path)
    return paths


def best_so_far_grid(results: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Curves on a common cost grid 1..budget; a run that stopped at the optimum stays there."""
    budget = float(results["budget"])
    grid = np.arange(1, int(math.floor(budget)) + 1, dtype=float)
    curves = np.full((len(results["runs"]), len(grid)), np.nan)
    for i, run in enumerate(results["runs"]):
        end = run["cost"] if run["evals_to_optimum"] is None else budget
        for cost, best in run["curve"]:
            curves[i, (grid >= cost - 1e-9) & (grid <= end + 1e-9)] = best
    return grid, curves


def _add_curve(figure: Any, go: Any, method: str, results: dict[str, Any]) -> None:
    grid, curves = best_so_far_grid(results)
    with warnings.catch_warnings():  # All-NaN columns (no run got there) are expected.
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        low = np.nanmin(curves, axis=0)
        high = np.nanmax(curves, axis=0)
    band = dict(mode="lines", line=dict(width=0), legendgroup=method, showlegend=False)
    figure.add_trace(go.Scatter(x=grid, y=high, name=f"{method} max", **band))
    figure.add_trace(
        go.Scatter(x=grid, y=low, name=f"{method} min", fill="tonexty", opacity=0.2, **band)
    )
    figure.add_trace(
        go.Scatter(x=grid, y=mean, mode="lines", name=f"{method} (mean)", legendgroup=method)
    )


DEEPENS_SOURCE_ATTR = "deepens_source"


def with_sources(record: dict[str, Any], trials: Sequence[Any]) -> dict[str, Any]:
    """``record`` plus how many trials each ``deepens_source`` proposed (deepens runs only)."""
    sources = [t.user_attrs.get(DEEPENS_SOURCE_ATTR) for t in trials]
    if any(sources):
        record["sources"] = {s: sources.count(s) for s in sorted(set(sources), key=str) if s}
    return record


def write_report(
    out_dir: Path,
    note: str,
    *,
    datasets: Sequence[str],
    summary: Callable[[Path, AllResults, str], Path],
    **plot_options: Any,
) -> Path:
    """summary.md (``summary``'s) and, with plotly, the best-so-far plots, from every JSON
    under ``out_dir``: the report step of the harnesses in nbgraph's and lcbench's form."""
    all_results = collect_results(out_dir, datasets=datasets)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = summary(out_dir, all_results, note)
    write_plots(out_dir, all_results, **plot_options)
    return path

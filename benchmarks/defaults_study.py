"""The defaults study of issue 17: each default's alternatives ranked on both NAS families.

For each default of the plain sampler (:data:`STUDIES`) reads the committed runs of its arms —
the acquisition: Thompson sampling (``deepens``, the default), PI, log EI and UCB
(``deepens-pi`` / ``-ei`` / ``-ucb``); the trust region: off (``deepens``) or on
(``deepens-tr``); the objective's scale: the copula (``deepens``) or z-scores
(``deepens-zscore``) — on NAS-Bench-201 (``results/nb201-acquisition``: 3 datasets, evaluations
to the optimum, a censored run counted as its budget) and NAS-Bench-Graph
(``results/nbgraph``: 9 datasets, regret after 100 evaluations, since few runs reach the
optimum there). Per dataset the arms are ranked by their mean over seeds (1 = best, ties
share), and the table gives each arm's mean rank per family and over all 12 datasets: the
issue's rule for choosing a default on more than one family of spaces. Only seeds every arm ran
on a dataset are compared.

Usage (from the repository root; reads JSON only, runs nothing)::

    python benchmarks/defaults_study.py            # writes results/defaults_study.md
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from nb201_table import DATASETS as NB201  # noqa: E402
from nbgraph import _average_ranks  # noqa: E402
from nbgraph_table import DATASETS as NBGRAPH  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Each default: its arms (method name -> label), the default's arm first.
STUDIES: dict[str, dict[str, str]] = {
    "acquisition": {
        "deepens": "Thompson sampling",
        "deepens-pi": "PI",
        "deepens-ei": "log EI",
        "deepens-ucb": "UCB",
    },
    "trust region": {"deepens": "off", "deepens-tr": "on: TrustRegion()"},
    "objective scale": {"deepens": "copula", "deepens-zscore": "standardized (z-scores)"},
}
ARMS = STUDIES["acquisition"]


def _runs(path: Path) -> tuple[dict[int, dict], dict]:
    data = json.loads(path.read_text())
    return {run["seed"]: run for run in data["runs"]}, data


def _metric(family: str, run: dict, budget: float) -> float:
    """NAS-Bench-201: evaluations to the optimum (budget if censored); NAS-Bench-Graph: regret
    at 100 evaluations in percentage points."""
    if family == "nb201":
        evals = run["evals_to_optimum"]
        return float(budget if evals is None else evals)
    return 100.0 * float(run["regret_at_100"])


def study(results: Path = RESULTS, arms: dict[str, str] = ARMS) -> tuple[list[dict], list[str]]:
    """One row per dataset (its arms' means, ranks and seeds), and notes on what was missing."""
    rows, notes = [], []
    for family, directory, datasets in (
        ("nb201", results / "nb201-acquisition", NB201),
        ("nbgraph", results / "nbgraph", NBGRAPH),
    ):
        for dataset in datasets:
            loaded = {}
            for arm in arms:
                path = directory / dataset / f"{arm}.json"
                if path.exists():
                    loaded[arm] = _runs(path)
            if len(loaded) < len(arms):
                missing = sorted(set(arms) - set(loaded))
                notes.append(f"{family}/{dataset}: no runs of {', '.join(missing)}")
                continue
            seeds = sorted(set.intersection(*(set(runs) for runs, _ in loaded.values())))
            if not seeds:
                notes.append(f"{family}/{dataset}: no seed common to every arm")
                continue
            means = {
                arm: float(np.mean([_metric(family, runs[s], meta["budget"]) for s in seeds]))
                for arm, (runs, meta) in loaded.items()
            }
            commits = sorted({meta["commit"] for _, meta in loaded.values()})
            rows.append(
                {
                    "family": family,
                    "dataset": dataset,
                    "seeds": len(seeds),
                    "means": means,
                    "ranks": _average_ranks(means),
                    "commits": commits,
                }
            )
    return rows, notes


HEADER = [
    "# Defaults study: the sampler's defaults on both NAS families",
    "",
    "Written by `benchmarks/defaults_study.py` from the committed runs. NAS-Bench-201: mean "
    "evaluations to the optimum (budget 300, a censored run counts 300); NAS-Bench-Graph: "
    "mean regret after 100 evaluations (pp). Lower is better; per default, its arms are ranked "
    "per dataset (ties share), on the seeds every arm ran.",
]


def report(rows: list[dict], notes: list[str], labels: dict[str, str] = ARMS) -> str:
    """One default's section: the per-dataset table and the mean ranks per family."""
    if not rows:
        return "No dataset has runs of every arm yet: " + "; ".join(notes) + ".\n"
    arms = list(labels)
    lines = [
        "| family | dataset | seeds | " + " | ".join(labels[a] for a in arms) + " | commits |",
        "|---|---|---|" + "---|" * len(arms) + "---|",
    ]
    for row in rows:
        best = min(row["means"].values())
        cells = [
            (f"**{row['means'][a]:.2f}**" if row["means"][a] == best else f"{row['means'][a]:.2f}")
            + f" ({row['ranks'][a]:g})"
            for a in arms
        ]
        lines.append(
            f"| {row['family']} | {row['dataset']} | {row['seeds']} | "
            + " | ".join(cells)
            + f" | {', '.join(row['commits'])} |"
        )
    lines += ["", "| mean rank | datasets | " + " | ".join(labels[a] for a in arms) + " |"]
    lines.append("|---|---|" + "---|" * len(arms))
    for label, family in (
        ("NAS-Bench-201", "nb201"),
        ("NAS-Bench-Graph", "nbgraph"),
        ("both", None),
    ):
        chosen = [r for r in rows if family is None or r["family"] == family]
        if not chosen:
            continue
        means = [np.mean([r["ranks"][a] for r in chosen]) for a in arms]
        cells = [f"**{m:.2f}**" if m == min(means) else f"{m:.2f}" for m in means]
        lines.append(f"| {label} | {len(chosen)} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Not compared: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <results>/defaults_study.md"
    )
    args = parser.parse_args(argv)
    sections = []
    for name, labels in STUDIES.items():
        rows, notes = study(args.results, labels)
        sections.append(f"## The {name}\n\n" + report(rows, notes, labels))
    text = "\n".join(HEADER) + "\n\n" + "\n".join(sections)
    out = args.out or args.results / "defaults_study.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

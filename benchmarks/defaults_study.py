"""The defaults study of issue 17: each default's alternatives ranked on more than one family.

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

The multi-fidelity defaults cannot be run on NAS-Bench-Graph (it has no learning curves): their
second family is LCBench's 34 tasks with short runs of 12 of 52 epochs
(``results/lcbench-multi-b50``, regret after 50 equivalent full trainings), beside
NAS-Bench-201's multi-fidelity rows (``results/nb201``, evaluations to the optimum, budget 60)
where they exist. There ``deepens-mf`` is the default: the kernel scores, promotion schedule.

Usage (from the repository root; reads JSON only, runs nothing)::

    python benchmarks/defaults_study.py            # writes results/defaults_study.md
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import json
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from lcbench_surrogate import TASKS  # noqa: E402
from nb201_table import DATASETS as NB201  # noqa: E402
from nbgraph import _average_ranks  # noqa: E402
from nbgraph_table import DATASETS as NBGRAPH  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _evals(run: dict, budget: float) -> float:
    """Evaluations to the optimum, a censored run counted as its budget."""
    evals = run["evals_to_optimum"]
    return float(budget if evals is None else evals)


@dataclass(frozen=True)
class Source:
    """One family's runs: where they are, on which datasets, and the metric (lower is better)."""

    family: str
    title: str
    directory: str
    datasets: tuple[str, ...]
    metric: Callable[[dict, float], float]


NB201_SOURCE = Source("nb201", "NAS-Bench-201", "nb201-acquisition", tuple(NB201), _evals)
NBGRAPH_SOURCE = Source(
    "nbgraph",
    "NAS-Bench-Graph",
    "nbgraph",
    tuple(NBGRAPH),
    lambda run, budget: 100.0 * float(run["regret_at_100"]),  # A fraction, in pp.
)
NB201_MF_SOURCE = Source(
    "nb201-mf", "NAS-Bench-201, multi-fidelity", "nb201", tuple(NB201), _evals
)
LCBENCH_MF_SOURCE = Source(
    "lcbench-mf",
    "LCBench, multi-fidelity",
    "lcbench-multi-b50",
    tuple(TASKS),
    # Already in pp; null when no full training had finished by then: NaN, and the seed left out.
    lambda run, budget: float("nan") if run["regret_at_50"] is None else run["regret_at_50"],
)
NAS_SOURCES = (NB201_SOURCE, NBGRAPH_SOURCE)
MF_SOURCES = (NB201_MF_SOURCE, LCBENCH_MF_SOURCE)


@dataclass(frozen=True)
class Default:
    """One default: its arms (method name -> label, the default's arm first), and the families
    its runs come from."""

    arms: dict[str, str]
    sources: tuple[Source, ...] = NAS_SOURCES


STUDIES: dict[str, Default] = {
    "acquisition": Default(
        {
            "deepens": "Thompson sampling",
            "deepens-pi": "PI",
            "deepens-ei": "log EI",
            "deepens-ucb": "UCB",
        }
    ),
    "trust region": Default({"deepens": "off", "deepens-tr": "on: TrustRegion()"}),
    "objective scale": Default({"deepens": "copula", "deepens-zscore": "standardized (z-scores)"}),
    "model on a space of choices": Default(
        {"deepens": "the ensemble", "deepens-kernel": 'the kernel (numeric_surrogate="kernel")'}
    ),
    "model with short runs": Default(
        {
            "deepens-mf": "the kernel (one GP over both fidelities)",
            "deepens-mf-ensemble": "the ensemble",
        },
        MF_SOURCES,
    ),
    "multi-fidelity schedule": Default(
        {"deepens-mf": "promotion", "deepens-mf-fixed": "fixed p/q/f"}, MF_SOURCES
    ),
    "cost share of full trainings (promotion schedule)": Default(
        {
            "deepens-mf": "the p/q/f share (0.21 on LCBench)",
            "deepens-mf-share35": "0.35",
            "deepens-mf-share50": "0.5",
        },
        (LCBENCH_MF_SOURCE,),
    ),
}
ARMS = STUDIES["acquisition"].arms


def _runs(path: Path) -> tuple[dict[int, dict], dict]:
    data = json.loads(path.read_text())
    return {run["seed"]: run for run in data["runs"]}, data


def study(
    results: Path = RESULTS,
    arms: dict[str, str] = ARMS,
    sources: Sequence[Source] = NAS_SOURCES,
) -> tuple[list[dict], list[str]]:
    """One row per dataset (its arms' means, ranks and seeds), and notes on what was missing:
    ``(family, dataset, why)``."""
    rows, notes = [], []
    for source in sources:
        directory = results / source.directory
        for dataset in source.datasets:
            loaded = {}
            for arm in arms:
                path = directory / dataset / f"{arm}.json"
                if path.exists():
                    loaded[arm] = _runs(path)
            if len(loaded) < len(arms):
                missing = sorted(set(arms) - set(loaded))
                notes.append((source.family, dataset, f"no runs of {', '.join(missing)}"))
                continue
            common = sorted(set.intersection(*(set(runs) for runs, _ in loaded.values())))
            values = {
                arm: np.array([source.metric(runs[s], meta["budget"]) for s in common])
                for arm, (runs, meta) in loaded.items()
            }
            known = np.all([np.isfinite(v) for v in values.values()], axis=0)
            seeds = [s for s, ok in zip(common, known) if ok]
            if not seeds:
                notes.append((source.family, dataset, "no seed common to every arm"))
                continue
            means = {arm: float(np.mean(v[known])) for arm, v in values.items()}
            commits = sorted({meta["commit"] for _, meta in loaded.values()})
            rows.append(
                {
                    "family": source.family,
                    "dataset": dataset,
                    "seeds": len(seeds),
                    "means": means,
                    "ranks": _average_ranks(means),
                    "commits": commits,
                }
            )
    return rows, notes


HEADER = [
    "# Defaults study: the sampler's defaults on more than one family of spaces",
    "",
    "Written by `benchmarks/defaults_study.py` from the committed runs. NAS-Bench-201 (`nb201`): "
    "mean evaluations to the optimum (budget 300, a censored run counts 300); NAS-Bench-Graph: "
    "mean regret after 100 evaluations (pp); multi-fidelity (`nb201-mf`, `lcbench-mf`): mean "
    "equivalent full evaluations to the NAS-Bench-201 optimum (budget 60, a censored run "
    "counts 60) and LCBench's mean regret after 50 (pp, short runs of 12 of 52 epochs). Lower "
    "is better; per default, its arms are ranked per dataset (ties share), on the seeds every "
    "arm ran (and, on LCBench, had a full result by 50).",
]


def report(
    rows: list[dict],
    notes: list[tuple[str, str, str]],
    labels: dict[str, str] = ARMS,
    sources: Sequence[Source] = NAS_SOURCES,
) -> str:
    """One default's section: the per-dataset table and the mean ranks per family."""
    if not rows:
        return "No dataset has runs of every arm yet: " + "; ".join(_grouped(notes)) + ".\n"
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
    per_family = []
    for source in sources:
        chosen = [r for r in rows if r["family"] == source.family]
        if chosen:
            per_family.append(np.mean([[r["ranks"][a] for a in arms] for r in chosen], axis=0))
            lines.append(_rank_row(source.title, len(chosen), per_family[-1]))
    if len(per_family) > 1:
        every = np.mean([[r["ranks"][a] for a in arms] for r in rows], axis=0)
        lines.append(_rank_row("all", len(rows), every))
        # 34 LCBench tasks would outvote 3 NAS-Bench-201 datasets: each family counts once too.
        lines.append(_rank_row("families, equal weight", len(rows), np.mean(per_family, 0)))
    if notes:
        lines += ["", "Not compared: " + "; ".join(_grouped(notes)) + "."]
    return "\n".join(lines) + "\n"


def _rank_row(label: str, n_datasets: int, means: np.ndarray) -> str:
    cells = [f"**{m:.2f}**" if m == means.min() else f"{m:.2f}" for m in means]
    return f"| {label} | {n_datasets} | " + " | ".join(cells) + " |"


def _grouped(notes: list[tuple[str, str, str]]) -> list[str]:
    """The notes, one per family and reason (34 LCBench tasks are many)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for family, dataset, why in notes:
        groups.setdefault((family, why), []).append(dataset)
    return [
        f"{family}/{datasets[0]}: {why}"
        if len(datasets) == 1
        else f"{family}, {len(datasets)} datasets ({', '.join(datasets[:4])}"
        f"{', ...' if len(datasets) > 4 else ''}): {why}"
        for (family, why), datasets in groups.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <results>/defaults_study.md"
    )
    args = parser.parse_args(argv)
    sections = []
    for name, default in STUDIES.items():
        rows, notes = study(args.results, default.arms, default.sources)
        sections.append(f"## The {name}\n\n" + report(rows, notes, default.arms, default.sources))
    text = "\n".join(HEADER) + "\n\n" + "\n".join(sections)
    out = args.out or args.results / "defaults_study.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

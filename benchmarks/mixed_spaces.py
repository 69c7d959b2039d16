"""Conditional mixed spaces (issue 18): regret, and how many categorical structures are tried.

The objective is ``tests/mixed.py``: three branches, 50-72 categorical combinations each, a
log-scale ``width`` and an integer ``depth`` shared by all branches, and a decoy combination
that the marginals point at. Issue 18 saw the default sampler find the right branch, width
and depth fast and then spend its trials refining the width of a few combinations, ending
worse than random search. Recorded per run, to see that:

* ``regret`` (final) and ``regret_at_N`` for N in 20/40/60 (up to ``--trials``);
* ``guided`` trials: the sampler's own choices (``deepens_source == "model"`` for deepens,
  trials after the 10th for the others, whose startup is 10 random trials too);
* ``distinct_structures``: distinct categorical structures (every categorical param, branch
  included; width and depth ignored) among the guided trials, and ``guided_on_seen``: guided
  trials whose structure had already been evaluated (width/depth changes only);
* ``most_tried``: guided trials spent on the structure tried most (refining one structure);
* ``at_decoy``: the best trial's structure is the decoy; ``structure_regret``: the part of
  the regret due to the structure (optimum minus its table value), the rest is width/depth;
* ``trace``: every trial as ``[structure, log2 width, depth, value, source]``.

Usage (from the repository root; one torch thread per worker)::

    python benchmarks/mixed_spaces.py --quick             # 2 seeds, 20 trials: a smoke test
    python benchmarks/mixed_spaces.py --seeds 5 --workers 1
    python benchmarks/mixed_spaces.py                     # 20 seeds, 60 trials, every method
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import datetime
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

import mixed  # noqa: E402
from nb201 import _versions as versions  # noqa: E402
from nb201 import execute  # noqa: E402
from nb201_report import _dumps as dumps  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "mixed"
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "tmp" / "mixed-quick"
DEFAULT_SEEDS = 20
DEFAULT_TRIALS = 60
QUICK_SEEDS = 2
QUICK_TRIALS = 20
QUICK_METHODS = ("deepens", "random")
CHECKPOINTS = (20, 40, 60)
STARTUP = 10  # Random trials before a model is used, for every method here.
SOURCE_ATTR = "deepens_source"


@dataclass(frozen=True)
class RunSpec:
    """One run; picklable, for the worker processes."""

    method: str
    seed: int
    trials: int


def _deepens(
    acquisition: str | None = None, numeric_surrogate: str = "auto", **ensemble: Any
) -> Callable[[int], BaseSampler]:
    def make(seed: int) -> BaseSampler:
        from optuna_deepens import DeepEnsembleSampler
        from optuna_deepens import EnsembleConfig

        return DeepEnsembleSampler(
            seed=seed,
            acquisition=acquisition,
            ensemble_config=EnsembleConfig(**ensemble),
            numeric_surrogate=numeric_surrogate,
        )

    return make


METHODS: dict[str, tuple[Callable[[int], BaseSampler], str]] = {
    "deepens": (_deepens(), "DeepEnsembleSampler(seed=s), defaults (Thompson sampling)"),
    "deepens-pi": (_deepens("pi"), 'DeepEnsembleSampler(seed=s, acquisition="pi")'),
    "deepens-kernel": (
        _deepens(numeric_surrogate="kernel"),
        'DeepEnsembleSampler(seed=s, numeric_surrogate="kernel"): a GP scores (log EI on its '
        "posterior, its default)",
    ),
    "deepens-kernel-ts": (
        _deepens("ts", numeric_surrogate="kernel"),
        'DeepEnsembleSampler(seed=s, numeric_surrogate="kernel", acquisition="ts"): Thompson '
        "sampling of the GP's draws",
    ),
    # Ensemble diversity (issue 18): randomised prior functions, bootstrapped results.
    **{
        f"deepens-prior{scale:g}": (
            _deepens(prior_scale=scale),
            f"DeepEnsembleSampler(ensemble_config=EnsembleConfig(prior_scale={scale:g}))",
        )
        for scale in (0.3, 1.0)
    },
    "deepens-boot": (
        _deepens(bootstrap=True),
        "DeepEnsembleSampler(ensemble_config=EnsembleConfig(bootstrap=True))",
    ),
    "deepens-m12": (
        _deepens(n_members=12),
        "DeepEnsembleSampler(ensemble_config=EnsembleConfig(n_members=12))",
    ),
    "random": (lambda seed: optuna.samplers.RandomSampler(seed=seed), "RandomSampler"),
    "gp": (lambda seed: optuna.samplers.GPSampler(seed=seed), "GPSampler(seed=s)"),
    "tpe": (
        lambda seed: optuna.samplers.TPESampler(multivariate=True, seed=seed),
        "TPESampler(multivariate=True, seed=s)",
    ),
}


# ---------------------------------------------------------------------------- one run
def structure_of(trial: FrozenTrial) -> tuple[tuple[str, Any], ...]:
    """The trial's categorical params (branch included), sorted by name."""
    return tuple(
        sorted(
            (name, trial.params[name])
            for name, distribution in trial.distributions.items()
            if isinstance(distribution, CategoricalDistribution)
        )
    )


def _label(trial: FrozenTrial) -> str:
    """A short name of the structure, e.g. ``cell:2201`` (choice indices in suggest order)."""
    branch, index = mixed.structure(trial.params)
    return f"{branch}:{''.join(str(i) for i in index)}"


def is_guided(trial: FrozenTrial, method: str) -> bool:
    """A trial the sampler chose with its model rather than at random."""
    if method.startswith("deepens"):
        return trial.user_attrs.get(SOURCE_ATTR) == "model"
    return trial.number >= STARTUP


def record_run(
    study: optuna.Study, method: str, seed: int, wall_s: float, optimum: float
) -> dict[str, Any]:
    """The JSON entry of one run (see the module docstring)."""
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = max(trials, key=lambda t: t.value)
    record: dict[str, Any] = {"seed": seed, "regret": optimum - best.value}
    for checkpoint in CHECKPOINTS:
        values = [t.value for t in trials if t.number < checkpoint]
        if len(study.trials) >= checkpoint:
            record[f"regret_at_{checkpoint}"] = optimum - max(values)
    seen: set[tuple] = set()
    guided, on_seen, distinct = 0, 0, Counter()
    for trial in trials:
        key = structure_of(trial)
        if is_guided(trial, method):
            guided += 1
            on_seen += key in seen
            distinct[key] += 1
        seen.add(key)
    decoy = tuple(sorted(mixed.decoy_params().items()))
    record.update(
        {
            "n_trials": len(study.trials),
            "best": best.value,
            "best_structure": _label(best),
            "best_width": best.params["width"],
            "best_depth": best.params["depth"],
            "structure_regret": optimum - mixed.structure_score(best.params),
            "at_decoy": structure_of(best) == decoy,
            "guided": guided,
            "distinct_structures": len(distinct),
            "guided_on_seen": on_seen,
            "most_tried": max(distinct.values(), default=0),
            "distinct_structures_all": len(seen),
            "wall_s": round(wall_s, 2),
            "trace": [
                [
                    _label(t),
                    round(math.log2(t.params["width"]), 3),
                    t.params["depth"],
                    round(t.value, 4),
                    t.user_attrs.get(SOURCE_ATTR, "guided" if is_guided(t, method) else "startup"),
                ]
                for t in trials
            ],
        }
    )
    return record


def run_one(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    """Worker entry point: one search of ``tests/mixed.py``, quiet logs."""
    # ERROR: GPSampler warns at every trial that it samples the conditional params at random.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=METHODS[spec.method][0](spec.seed))
    start = time.perf_counter()
    study.optimize(mixed.objective, n_trials=spec.trials)
    wall = time.perf_counter() - start
    return spec, record_run(study, spec.method, spec.seed, wall, mixed.optimum())


# ---------------------------------------------------------------------------- report
def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.nan


def summary_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """One row per method (median of runs unless said otherwise)."""
    lines = [
        "| method | runs | trials | regret median / mean / worst | @20 | @40 | "
        "distinct structures (guided) | guided on seen structures | most-tried structure | "
        "at decoy | "
        "structure regret | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, payload in results.items():
        runs = payload["runs"]
        regrets = [r["regret"] for r in runs]

        def at(checkpoint: int, runs: list = runs) -> str:
            values = [r[f"regret_at_{checkpoint}"] for r in runs if f"regret_at_{checkpoint}" in r]
            return f"{_median(values):.2f}" if values else "–"

        on_seen = [r["guided_on_seen"] / max(r["guided"], 1) for r in runs]
        cells = [
            method,
            str(len(runs)),
            str(payload["trials"]),
            f"{_median(regrets):.2f} / {np.mean(regrets):.2f} / {max(regrets):.2f}",
            at(20),
            at(40),
            f"{_median([r['distinct_structures'] for r in runs]):g} of "
            f"{_median([r['guided'] for r in runs]):g}",
            f"{100 * _median(on_seen):.0f}%",
            f"{_median([r['most_tried'] for r in runs]):g}",
            f"{sum(r['at_decoy'] for r in runs)}/{len(runs)}",
            f"{_median([r['structure_regret'] for r in runs]):.2f}",
            f"{np.mean([r['wall_s'] for r in runs]):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_summary(out_dir: Path, meta: dict[str, Any]) -> Path:
    """summary.md from every method JSON under ``out_dir``."""
    results = {
        p.stem: json.loads(p.read_text())
        for p in sorted(out_dir.glob("*.json"), key=lambda p: list(METHODS).index(p.stem))
        if p.stem in METHODS
    }
    lines = [
        "# Conditional mixed space (tests/mixed.py): regret at a fixed budget",
        "",
        f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['date']}; optimum "
        f"{mixed.optimum():.3f}; sitting at the decoy is a regret of at least "
        f"{mixed.optimum() - mixed.DECOY:.2f}.",
        "",
        "Regret: optimum minus the best value (median / mean / worst over runs; @N: median "
        "after N trials). *distinct structures (guided)*: median number of distinct "
        "categorical structures (branch and its categorical params) among the guided trials "
        "(deepens: `deepens_source == model`; others: trials after the 10th), of the median "
        "number of guided trials. *guided on seen structures*: median share of guided trials "
        "whose structure was already evaluated (a width/depth change only). *most-tried "
        "structure*: median number of guided trials on the structure a run tried most. "
        "*at decoy*: runs whose best trial has the decoy structure. *structure regret*: median "
        "of the optimum minus the best trial's structure value (the rest is width and depth).",
        "",
        *summary_table(results),
        "",
    ]
    other = {
        m: f"{p['commit']}, {p['date']}"
        for m, p in results.items()
        if (p["commit"], p["command"]) != (meta["commit"], meta["command"])
    }
    if other:
        lines += [
            "Rows from earlier invocations: " + "; ".join(f"{m} ({v})" for m, v in other.items()),
            "",
        ]
    lines += [f"- `{m}`: {p['description']}" for m, p in results.items()] + [""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    parser.add_argument("--seeds", type=int, default=None, help="runs per method: 0..N-1")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SEEDS} seeds, {QUICK_TRIALS} trials, {' and '.join(QUICK_METHODS)}, into "
        f"{QUICK_RESULTS_DIR.relative_to(REPO_ROOT)}/",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.methods = args.methods or list(QUICK_METHODS if quick else METHODS)
    args.seeds = args.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    args.trials = args.trials or (QUICK_TRIALS if quick else DEFAULT_TRIALS)
    args.out = args.out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    commit = git_commit()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit and commit + ("-dirty" if git_dirty() else ""),
        "command": "python benchmarks/mixed_spaces.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "versions": versions(),
        "workers": args.workers,
    }
    # Slow methods first, so the pool ends together.
    specs = [
        RunSpec(method, seed, args.trials)
        for method in sorted(args.methods, key=lambda m: not m.startswith(("deepens", "gp")))
        for seed in range(args.seeds)
    ]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(specs)} runs on {args.workers} worker(s) -> {args.out}", flush=True)
    start = time.perf_counter()
    for spec, record in execute(specs, args.workers, run_one):
        runs[spec.method].append(record)
        payload = {
            "method": spec.method,
            "description": METHODS[spec.method][1],
            "trials": spec.trials,
            "optimum": mixed.optimum(),
            **meta,
            "runs": sorted(runs[spec.method], key=lambda r: r["seed"]),
        }
        (args.out / f"{spec.method}.json").write_text(dumps(payload))
        print(
            f"[{time.perf_counter() - start:6.0f} s] {spec.method:10s} seed {spec.seed:2d}: "
            f"regret {record['regret']:.3f}, {record['distinct_structures']} structures in "
            f"{record['guided']} guided trials, best {record['best_structure']}"
            f"{' (decoy)' if record['at_decoy'] else ''} ({record['wall_s']:.1f} s)",
            flush=True,
        )
    summary = write_summary(args.out, meta)
    print(summary.read_text())
    print(f"done in {time.perf_counter() - start:.0f} s; summary: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-trial sampler overhead of DeepEnsembleSampler, GPSampler and multivariate TPE.

For each study size N and each sampler, a fresh study is pre-filled with N finished trials of a
fixed NAS-like objective, then K more trials are run and the *sampling overhead* of each is
timed: the wall time of ``study.ask()`` plus the objective's ``suggest_*`` calls. The first
timed trial is reported on its own ("first trial"); the headline number is the median of the
other K - 1.

Why this measures the right thing:

* **ask() + suggests is everything the sampler does for a trial, and nothing else.** Optuna
  calls ``before_trial`` inside ``ask()`` but evaluates ``infer_relative_search_space`` and
  ``sample_relative`` lazily, at the first ``suggest_*`` call, and ``sample_independent`` at
  each suggest outside the relative space. Timing ``ask()`` alone would miss the model fit;
  timing ``study.optimize`` end to end would add the objective and ``tell()``. The objective
  itself costs microseconds, so there is nothing to subtract. ``tell()`` (storage write plus
  ``after_trial``) is timed separately and stored in the JSON, not in the table.
* **Pre-filling gives the history of a long study without paying for it.** A sampler's cost per
  trial depends on the trials it reads (N of them, their parameters and values), not on how
  they were produced, so ``study.add_trials`` with N random architectures reaches a
  2,000-trial history in seconds instead of hours. The timed trials are then asked for one by
  one through the ordinary path, each adding one trial, as in a running study.
* **The first timed trial is a cold start; the rest are the steady state.** DeepEnsembleSampler
  warm-starts its networks from the previous trial's fit, and GPSampler reuses the previous
  kernel parameters, but a pre-filled study has no previous fit: the first trial fits from
  scratch on N trials. In a long study that happens once (or once per process), so it is shown
  separately and the median of the remaining trials is the per-trial overhead a user pays.
  The median rather than the mean keeps a garbage-collection pause or a scheduler hiccup on a
  2-core machine from moving the number.
* **Every (sampler, size) cell runs in its own process.** Nothing is shared between cells
  (torch thread pools, allocator state, sampler caches), and a cell that exceeds its time cap
  is stopped by terminating the process, even in the middle of one slow trial. The cap starts
  after pre-filling, so it only bounds the timed trials.

On a machine shared with other jobs, torch's default of one intra-op thread per core can make
a multi-threaded sampler (GPSampler) wait on its own threads; ``--torch-threads 1`` avoids
that. The JSON's per-trial process CPU time shows time spent waiting for a core (wall time
above CPU time), though not threads spinning while they wait for each other.

The random pre-fill differs from what a model-based sampler would have chosen (its trials
cluster around good architectures); the per-trial cost of the three samplers depends on the
number of trials and parameters, not on where they lie, so this does not bias the comparison.

Run from the repository root::

    python benchmarks/overhead.py                       # in-memory storage
    python benchmarks/overhead.py --storage sqlite      # a temporary SQLite file per cell
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import datetime
import hashlib
import json
import math
import multiprocessing
import os
from pathlib import Path
import platform
import queue
import statistics
import sys
import tempfile
import time
from typing import Any
import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import torch

import optuna_deepens
from optuna_deepens import DeepEnsembleSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.
from provenance import cpu_model  # noqa: E402
from provenance import git_commit  # noqa: E402
from provenance import git_dirty  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "overhead.json"
SAMPLER_LABELS = {
    "deepens": "DeepEnsembleSampler",
    "gp": "GPSampler",
    "tpe": "TPESampler(multivariate=True)",
}
TARGETS = {500: 0.3, 2000: 1.0}  # DeepEnsembleSampler median s/trial must be at most this.
PREFILL_TIMEOUT_S = 900.0  # Pre-filling 2,000 trials into SQLite takes well under this.

# ------------------------------------------------------------------------ NAS-like objective
# A cell of 6 edges, each one of 5 operations, then a block that is either a convolution (with
# a kernel size) or attention (with a number of heads), and a learning rate.
N_EDGES = 6
OPS = ("none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3")
OP_SCORE = {
    "none": 0.0,
    "skip_connect": 0.45,
    "conv_1x1": 0.7,
    "conv_3x3": 1.0,
    "avg_pool_3x3": 0.3,
}
EDGE_WEIGHT = (1.0, 0.8, 1.2, 0.6, 1.0, 0.9)
BLOCKS = ("conv", "attn")
HEADS = (1, 2, 4, 8)
LR_LOW, LR_HIGH = 1e-4, 1e-1

DISTRIBUTIONS: dict[str, BaseDistribution] = {
    **{f"edge_{i}": CategoricalDistribution(OPS) for i in range(N_EDGES)},
    "block": CategoricalDistribution(BLOCKS),
    "kernel": IntDistribution(3, 7, step=2),
    "heads": CategoricalDistribution(HEADS),
    "lr": FloatDistribution(LR_LOW, LR_HIGH, log=True),
}


def suggest_architecture(trial: optuna.Trial) -> dict[str, Any]:
    """The objective's search space, as define-by-run ``suggest_*`` calls."""
    params: dict[str, Any] = {
        f"edge_{i}": trial.suggest_categorical(f"edge_{i}", OPS) for i in range(N_EDGES)
    }
    params["block"] = trial.suggest_categorical("block", BLOCKS)
    if params["block"] == "conv":
        params["kernel"] = trial.suggest_int("kernel", 3, 7, step=2)
    else:
        params["heads"] = trial.suggest_categorical("heads", HEADS)
    params["lr"] = trial.suggest_float("lr", LR_LOW, LR_HIGH, log=True)
    return params


def random_architecture(rng: np.random.Generator) -> dict[str, Any]:
    """The same space drawn uniformly (log-uniformly for ``lr``), as plain Python values."""
    params: dict[str, Any] = {f"edge_{i}": OPS[rng.integers(len(OPS))] for i in range(N_EDGES)}
    params["block"] = BLOCKS[rng.integers(len(BLOCKS))]
    if params["block"] == "conv":
        params["kernel"] = int(rng.choice([3, 5, 7]))
    else:
        params["heads"] = HEADS[rng.integers(len(HEADS))]
    params["lr"] = float(math.exp(rng.uniform(math.log(LR_LOW), math.log(LR_HIGH))))
    return params


def accuracy(params: dict[str, Any]) -> float:
    """A deterministic, accuracy-like score (to maximise) with edge interactions."""
    ops = [params[f"edge_{i}"] for i in range(N_EDGES)]
    score = sum(w * OP_SCORE[op] for w, op in zip(EDGE_WEIGHT, ops))
    if ops[0] == "none" and ops[1] == "none":
        score -= 1.5  # The input is cut off from the cell.
    score -= 0.25 * max(0, ops.count("conv_3x3") - 4)  # Too deep for its width.
    if params["block"] == "conv":
        score += 0.5 - 0.1 * abs(params["kernel"] - 5)
    else:
        score += 0.2 + 0.15 * math.log2(params["heads"]) - 0.02 * params["heads"]
    score -= 0.4 * (math.log10(params["lr"]) + 2.5) ** 2
    return 60.0 + 5.0 * score


def prefill_trials(n: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        params = random_architecture(rng)
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions={name: DISTRIBUTIONS[name] for name in params},
                value=accuracy(params),
            )
        )
    return trials


# ---------------------------------------------------------------------------------- samplers
def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    factories: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "deepens": lambda: DeepEnsembleSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, multivariate=True, warn_independent_sampling=False
        ),
    }
    return factories[name]()


# ----------------------------------------------------------------------------- one cell
@dataclass
class CellResult:
    sampler: str
    n_prefilled: int
    storage: str
    trials_requested: int
    prefill_s: float | None = None
    overhead_s: list[float] = field(default_factory=list)  # ask() + suggests, per trial.
    tell_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # Process CPU time of ask() + suggests.
    source_sha256: str | None = None  # Of the optuna_deepens sources the cell ran.
    cap_s: float | None = None
    capped: bool = False
    error: str | None = None

    @property
    def first_trial_s(self) -> float | None:
        return self.overhead_s[0] if self.overhead_s else None

    @property
    def median_s(self) -> float | None:
        rest = self.overhead_s[1:]
        return statistics.median(rest) if rest else None

    @property
    def median_cpu_s(self) -> float | None:
        """CPU time the cell's process used; near ``median_s`` unless other load preempted it."""
        rest = self.cpu_s[1:]
        return statistics.median(rest) if rest else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "trials_completed": len(self.overhead_s),
            "first_trial_s": self.first_trial_s,
            "median_s": self.median_s,
            "median_cpu_s": self.median_cpu_s,
        }


def _run_cell_in_child(
    sampler_name: str,
    n_prefilled: int,
    n_trials: int,
    storage_url: str | None,
    seed: int,
    torch_threads: int | None,
    messages: multiprocessing.Queue,
) -> None:
    """Child process: pre-fill a study, then time ``n_trials`` trials, reporting each at once."""
    try:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.simplefilter("ignore")
        study = optuna.create_study(
            direction="maximize", sampler=make_sampler(sampler_name, seed), storage=storage_url
        )
        start = time.perf_counter()
        study.add_trials(prefill_trials(n_prefilled, seed))
        threads = torch.get_num_threads()
        messages.put(("ready", time.perf_counter() - start, threads, source_digest()))
        for _ in range(n_trials):
            cpu_start = time.process_time()
            start = time.perf_counter()
            trial = study.ask()
            params = suggest_architecture(trial)
            asked = time.perf_counter()
            cpu = time.process_time() - cpu_start
            study.tell(trial, accuracy(params))
            messages.put(("trial", asked - start, time.perf_counter() - asked, cpu))
        messages.put(("done",))
    except BaseException as error:  # Reported to the parent, which records it in the cell.
        messages.put(("error", f"{type(error).__name__}: {error}"))


def run_cell(
    sampler_name: str,
    n_prefilled: int,
    n_trials: int,
    storage: str,
    cap_s: float,
    seed: int,
    torch_threads: int | None,
    tmpdir: Path,
) -> tuple[CellResult, int | None]:
    """Run one (sampler, size) cell in a fresh process; stop it once ``cap_s`` is spent.

    Returns the cell and the child's torch thread count.
    """
    result = CellResult(sampler_name, n_prefilled, storage, n_trials, cap_s=cap_s)
    storage_url = None
    if storage == "sqlite":
        storage_url = f"sqlite:///{tmpdir / f'{sampler_name}-{n_prefilled}.db'}"
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    process = context.Process(
        target=_run_cell_in_child,
        args=(sampler_name, n_prefilled, n_trials, storage_url, seed, torch_threads, messages),
        daemon=True,
    )
    process.start()
    threads = None
    deadline = time.monotonic() + PREFILL_TIMEOUT_S
    try:
        while True:
            try:
                message = messages.get(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    if result.prefill_s is None:
                        result.error = f"pre-filling took over {PREFILL_TIMEOUT_S:.0f} s"
                    else:
                        result.capped = True
                    break
                if not process.is_alive() and messages.empty():
                    result.error = f"the cell's process died (exit code {process.exitcode})"
                    break
                continue
            kind = message[0]
            if kind == "ready":
                result.prefill_s, threads, result.source_sha256 = message[1:4]
                deadline = time.monotonic() + cap_s
            elif kind == "trial":
                result.overhead_s.append(message[1])
                result.tell_s.append(message[2])
                result.cpu_s.append(message[3])
            elif kind == "error":
                result.error = message[1]
                break
            else:
                break
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
    return result, threads


# ----------------------------------------------------------------------------- reporting
def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _unmeasured(result: CellResult | None, value: float | None) -> str | None:
    """What a table cell shows when there is no number to show, else ``None``."""
    if result is None:
        return "—"
    if result.error:
        return "error"
    if value is None:
        return f"> {result.cap_s:.0f} s cap" if result.capped else "—"
    return None


def median_cell(result: CellResult | None) -> str:
    value = result.median_s if result is not None else None
    if (missing := _unmeasured(result, value)) is not None:
        return missing
    assert result is not None and value is not None
    text = _seconds(value)
    if result.capped:
        text += f" ({len(result.overhead_s)}/{result.trials_requested} trials, capped)"
    return text


def first_cell(result: CellResult | None) -> str:
    value = result.first_trial_s if result is not None else None
    if (missing := _unmeasured(result, value)) is not None:
        return missing
    assert value is not None
    return _seconds(value)


def markdown_table(
    results: Sequence[CellResult], samplers: Sequence[str], sizes: Sequence[int]
) -> str:
    cells = {(r.sampler, r.n_prefilled): r for r in results}
    header = (
        ["sampler"]
        + [f"median s/trial @ {n}" for n in sizes]
        + [f"first trial s @ {n}" for n in sizes]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in samplers:
        row = [SAMPLER_LABELS[name]]
        row += [median_cell(cells.get((name, n))) for n in sizes]
        row += [first_cell(cells.get((name, n))) for n in sizes]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def target_report(results: Sequence[CellResult]) -> list[str]:
    lines = []
    for r in results:
        if r.sampler != "deepens" or r.n_prefilled not in TARGETS:
            continue
        limit = TARGETS[r.n_prefilled]
        met = r.median_s is not None and r.median_s <= limit and not r.error
        shown = "n/a" if r.median_s is None else f"{r.median_s:.3f} s"
        verdict = "met" if met else "MISSED"
        lines.append(
            f"DeepEnsembleSampler @ {r.n_prefilled}: {shown} (target <= {limit} s): {verdict}"
        )
    return lines


def source_digest() -> str:
    """Short SHA-256 of the imported optuna_deepens sources: identifies the code measured."""
    digest = hashlib.sha256()
    for path in sorted(Path(optuna_deepens.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100, 500, 2000],
        help="Finished trials pre-filled before timing (default 100 500 2000).",
    )
    parser.add_argument(
        "--trials-per-size",
        type=int,
        default=15,
        help="Timed trials per cell, the first reported separately (default 15).",
    )
    parser.add_argument(
        "--samplers",
        nargs="+",
        choices=list(SAMPLER_LABELS),
        default=list(SAMPLER_LABELS),
        help="Samplers to compare (default: all).",
    )
    parser.add_argument(
        "--storage",
        choices=["memory", "sqlite"],
        default="memory",
        help="In-memory storage, or a temporary SQLite file per cell (default memory).",
    )
    parser.add_argument(
        "--max-seconds-per-cell",
        type=float,
        default=300.0,
        help="Time cap on the timed trials of one (sampler, size) cell (default 300).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Pre-fill and sampler seed.")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads in each cell (default: torch's own choice, one per core).",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file.")
    args = parser.parse_args(argv)
    if args.trials_per_size < 2:
        parser.error("--trials-per-size must be at least 2: the first trial is a cold start.")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    commit, dirty = git_commit(), git_dirty("optuna_deepens")
    load_before = load_average()
    if load_before is not None and load_before > 0.5 * usable_cores():
        print(
            f"warning: 1-minute load average is {load_before} on {usable_cores()} cores; other "
            "processes will inflate the timings.",
            file=sys.stderr,
        )
    results: list[CellResult] = []
    torch_threads = None
    with tempfile.TemporaryDirectory(prefix="deepens-overhead-") as tmp:
        for n in args.sizes:
            for name in args.samplers:
                print(f"[{SAMPLER_LABELS[name]} @ {n}] ...", end=" ", flush=True)
                result, threads = run_cell(
                    name,
                    n,
                    args.trials_per_size,
                    args.storage,
                    args.max_seconds_per_cell,
                    args.seed,
                    args.torch_threads,
                    Path(tmp),
                )
                torch_threads = threads if threads is not None else torch_threads
                results.append(result)
                print(
                    f"prefill {result.prefill_s or float('nan'):.1f} s, "
                    f"{len(result.overhead_s)}/{args.trials_per_size} trials, "
                    f"first {first_cell(result)}, median {median_cell(result)}"
                    + (f", {result.error}" if result.error else ""),
                    flush=True,
                )
    finished = datetime.datetime.now(datetime.timezone.utc)

    digests = sorted({r.source_sha256 for r in results if r.source_sha256})
    if len(digests) > 1:
        print(
            "warning: optuna_deepens changed on disk during the run; cells measured different "
            f"code (source digests {digests}, per cell in the JSON).",
            file=sys.stderr,
        )
    table = markdown_table(results, args.samplers, args.sizes)
    print()
    print(table)
    print()
    for line in target_report(results):
        print(line)

    report = {
        "benchmark": "overhead",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "commit": commit,
        "uncommitted_package_changes": dirty,
        "deepens_source_sha256": digests,
        "machine": {
            "cpu": cpu_model(),
            "usable_cores": usable_cores(),
            "load_average_1min": {"start": load_before, "end": load_average()},
            "platform": platform.platform(),
        },
        "torch_threads": torch_threads,
        "versions": {
            "python": platform.python_version(),
            "optuna": optuna.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "settings": {
            "sizes": args.sizes,
            "trials_per_size": args.trials_per_size,
            "samplers": args.samplers,
            "storage": args.storage,
            "max_seconds_per_cell": args.max_seconds_per_cell,
            "seed": args.seed,
            "torch_threads": args.torch_threads,
        },
        "targets_deepens_median_s": TARGETS,
        "table_markdown": table,
        "cells": [r.to_json() for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()

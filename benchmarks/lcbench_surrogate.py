"""LCBench through YAHPO Gym's surrogate, evaluated with onnxruntime alone.

YAHPO Gym (Pfisterer et al. 2022) fits one network to the learning curves of LCBench (Zimmer et
al. 2021: funnel-shaped MLPs on 34 OpenML tasks). ``yahpo-gym`` pins ConfigSpace 0.6.1 and
numpy < 2, so rather than depend on it this module reproduces what ``yahpo-gym==1.0.2`` does
before and after its ONNX call (``BenchmarkSet._config_to_xs`` and ``objective_function``):

* ``x_cont`` (float32, one row per configuration): the values as given, in the order of its
  lcbench ``cont_names``: epoch, batch_size, learning_rate, momentum, weight_decay,
  num_layers, max_units, max_dropout (``INPUTS``). No transform happens in Python: the log
  transforms (of epoch, learning_rate and weight_decay) and the min-max scaling of the inputs
  are nodes of ``model.onnx`` itself, so applying them here would apply them twice;
* ``x_cat`` (int32): the task id through ``encoding.json`` (``"OpenML_task_id"``; note that it
  is not the order of ``config_space.json``);
* the output's six columns are the targets in ``TARGETS`` order, already on their own scale
  (the sigmoid-then-affine, and exp for the accuracy-like targets, is also in the graph).

A configuration evaluated alone reproduces ``reference_outputs.csv`` (yahpo-gym's values)
bit for bit. In a batch of four or more rows onnxruntime's vectorised kernels round some rows
differently: over the 600 reference rows in one batch, at most 3.7e-4 pp of val_accuracy (4e-6
relative) and 4.2e-3 s of time (1.4e-3 relative, where the time is ~1 s); yahpo-gym batches a
list of configurations the same way, so a batched call equals its batched call.

The data folder (``../shared/benchdata/lcbench/``, or a path argument) is read in place and
never copied into the repository. Run from the repository root::

    python benchmarks/lcbench_surrogate.py --check           # against reference_outputs.csv
    python benchmarks/lcbench_surrogate.py --reference-best  # results/lcbench/reference_best.json
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from collections.abc import Sequence
import csv
from dataclasses import dataclass
import functools
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # Sibling modules, when imported.

from nb201_table import REPO_ROOT  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "benchdata" / "lcbench"
REFERENCE_BEST = REPO_ROOT / "benchmarks" / "results" / "lcbench" / "reference_best.json"

TARGETS = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
# yahpo-gym 1.0.2's ``cont_names`` for lcbench: the columns of the model's ``x_cont`` input.
INPUTS = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
HYPERPARAMETERS = tuple(sorted(INPUTS[1:]))  # What a configuration holds.
TASK_PARAM = "OpenML_task_id"
MIN_EPOCH, MAX_EPOCH = 1, 52
# The 34 instances, in config_space.json's order (checked against the file on load): known
# without the data, so that argument parsing and reports need no data folder.
TASKS = (
    "3945",
    "7593",
    "34539",
    "126025",
    "126026",
    "126029",
    "146212",
    "167104",
    "167149",
    "167152",
    "167161",
    "167168",
    "167181",
    "167184",
    "167185",
    "167190",
    "167200",
    "167201",
    "168329",
    "168330",
    "168331",
    "168335",
    "168868",
    "168908",
    "168910",
    "189354",
    "189862",
    "189865",
    "189866",
    "189873",
    "189905",
    "189906",
    "189908",
    "189909",
)
# config_space.json stores 1e-4 as 0.00010000000000000009 (exp(log(1e-4)) in R): bounds are
# checked with this relative slack so that a sampler's exact 1e-4 is not rejected.
BOUND_SLACK = 1e-9

Configs = Sequence[Mapping[str, float]] | Mapping[str, Any]


@dataclass(frozen=True)
class Hyperparameter:
    """One searched hyperparameter of ``config_space.json``."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def check(self, values: np.ndarray) -> None:
        """ValueError naming the first value out of bounds, not finite, or not integral."""
        low = self.low - BOUND_SLACK * abs(self.low)
        high = self.high + BOUND_SLACK * abs(self.high)
        bad = ~np.isfinite(values) | (values < low) | (values > high)
        if self.integer:
            bad |= values != np.round(values)
        if bad.any():
            value = float(values[np.flatnonzero(bad)[0]])
            kind = "an integer" if self.integer else "a number"
            raise ValueError(
                f"{self.name}={value!r} is not {kind} in [{self.low:g}, {self.high:g}]."
            )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform draws, log-uniform for a log parameter; integers rounded (param_set.R)."""
        if self.integer and not self.log:
            return rng.integers(int(self.low), int(self.high) + 1, size=n).astype(float)
        if self.log:
            values = np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=n))
        else:
            values = rng.uniform(self.low, self.high, size=n)
        if self.integer:
            values = np.round(values)
        return np.clip(values, self.low, self.high)


class LCBenchSurrogate:
    """The surrogate of one data folder: ``evaluate`` answers batches in one ONNX call.

    Build it with :meth:`load`. ``tasks`` are the 34 OpenML task ids (strings), ``space`` the
    seven searched hyperparameters.
    """

    def __init__(
        self,
        session: Any,
        *,
        path: Path,
        space: Mapping[str, Hyperparameter],
        encoding: Mapping[str, int],
    ) -> None:
        self._session = session
        self.path = path
        self.space = dict(space)
        self._encoding = dict(encoding)
        self._output = session.get_outputs()[0].name

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS

    @classmethod
    def load(cls, path: str | Path = DEFAULT_DATA, *, threads: int = 1) -> LCBenchSurrogate:
        """Read ``config_space.json``, ``encoding.json`` and ``model.onnx`` from ``path``.

        ``threads``: onnxruntime's intra-op threads; 1 because benchmark workers are the
        parallelism (and a 7-input MLP gains nothing from more).
        """
        import onnxruntime

        path = Path(path)
        files = {
            name: path / name for name in ("model.onnx", "config_space.json", "encoding.json")
        }
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"LCBench surrogate files not found: {missing}; pass the data folder "
                "(see ../shared/benchdata/lcbench/README.md)."
            )
        space, tasks = _read_config_space(files["config_space.json"])
        if tasks != TASKS:
            raise ValueError(f"{files['config_space.json']}: unexpected task list {tasks}.")
        encoding = json.loads(files["encoding.json"].read_text())[TASK_PARAM]
        unencoded = [t for t in TASKS if t not in encoding]
        if unencoded:
            raise ValueError(f"{files['encoding.json']}: no code for tasks {unencoded}.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(files["model.onnx"]), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(session, path=path, space=space, encoding=encoding)

    def evaluate(
        self, task: str | int, configs: Configs, epochs: int | Sequence[int] | np.ndarray
    ) -> dict[str, np.ndarray]:
        """The six targets of each configuration after ``epochs`` epochs on ``task``.

        Args:
            task: An OpenML task id of ``tasks``.
            configs: A list of dicts with the seven hyperparameters, or one dict of columns
                (arrays of equal length), which is faster for large batches.
            epochs: One epoch for all, or one per configuration, integers in 1..52.

        Returns:
            ``{target: float64 array}`` in ``TARGETS``; val_accuracy is in percent.
        """
        columns = self._columns(configs)
        n = len(next(iter(columns.values())))
        epoch = self._epochs(epochs, n)
        code = self._encoding[self.check_task(task)]
        if n == 0:
            return {name: np.empty(0) for name in TARGETS}
        x_cont = np.column_stack([epoch, *(columns[name] for name in INPUTS[1:])])
        x_cat = np.full((n, 1), code, dtype=np.int32)
        feeds = {"x_cat": x_cat, "x_cont": x_cont.astype(np.float32)}
        (out,) = self._session.run([self._output], feeds)
        return {name: out[:, i].astype(np.float64) for i, name in enumerate(TARGETS)}

    def learning_curve(
        self, task: str | int, config: Mapping[str, float]
    ) -> dict[str, np.ndarray]:
        """Every target at epochs 1..52 of one configuration, in one call (52 rows)."""
        epochs = np.arange(MIN_EPOCH, MAX_EPOCH + 1)
        values = self._columns([config])  # Names and bounds checked once, not 52 times.
        columns = {name: np.repeat(v, len(epochs)) for name, v in values.items()}
        return self.evaluate(task, columns, epochs)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` random configurations as columns, each parameter drawn as ``Hyperparameter``."""
        return {name: self.space[name].sample(n, rng) for name in HYPERPARAMETERS}

    def check_task(self, task: str | int) -> str:
        task = str(task)
        if task not in self._encoding or task not in TASKS:
            raise ValueError(f"Unknown LCBench task {task!r}; the tasks are {', '.join(TASKS)}.")
        return task

    def _columns(self, configs: Configs) -> dict[str, np.ndarray]:
        if isinstance(configs, Mapping):
            names, rows = set(configs), None
        else:
            rows = list(configs)
            names = set().union(*(row.keys() for row in rows)) if rows else set(HYPERPARAMETERS)
        _check_names(names)
        if rows is None:
            columns = {name: np.asarray(configs[name], dtype=float) for name in HYPERPARAMETERS}
            lengths = {len(c) for c in columns.values()}
            if len(lengths) != 1:
                raise ValueError(f"Columns of unequal lengths {sorted(lengths)}.")
        else:
            for row in rows:
                _check_names(set(row))
            columns = {
                name: np.array([float(row[name]) for row in rows], dtype=float)
                for name in HYPERPARAMETERS
            }
        for name, values in columns.items():
            self.space[name].check(values)
        return columns

    @staticmethod
    def _epochs(epochs: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
        values = np.asarray(epochs, dtype=float)
        if values.ndim == 0:
            values = np.full(n, float(values))
        if values.shape != (n,):
            raise ValueError(
                f"Expected one epoch, or one per configuration ({n}); got shape {values.shape}."
            )
        bad = ~np.isfinite(values) | (values != np.round(values))
        bad |= (values < MIN_EPOCH) | (values > MAX_EPOCH)
        if bad.any():
            raise ValueError(
                f"epoch={float(values[bad][0])!r}: LCBench epochs are integers "
                f"{MIN_EPOCH}..{MAX_EPOCH}."
            )
        return values


def _check_names(names: set[str]) -> None:
    missing = sorted(set(HYPERPARAMETERS) - names)
    unknown = sorted(names - set(HYPERPARAMETERS))
    if missing or unknown:
        raise ValueError(
            f"An LCBench configuration has exactly {', '.join(HYPERPARAMETERS)} "
            f"(the task and the epoch are separate arguments); missing {missing}, "
            f"unknown {unknown}."
        )


def _read_config_space(path: Path) -> tuple[dict[str, Hyperparameter], tuple[str, ...]]:
    """The searched hyperparameters and the task list of a ConfigSpace JSON file."""
    space, tasks = {}, ()
    for hp in json.loads(path.read_text())["hyperparameters"]:
        if hp["name"] == TASK_PARAM:
            tasks = tuple(hp["choices"])
        elif hp["name"] in HYPERPARAMETERS:
            space[hp["name"]] = Hyperparameter(
                name=hp["name"],
                low=float(hp["lower"]),
                high=float(hp["upper"]),
                log=bool(hp["log"]),
                integer=hp["type"] == "uniform_int",
            )
    if set(space) != set(HYPERPARAMETERS):
        raise ValueError(f"{path}: expected {HYPERPARAMETERS}, found {sorted(space)}.")
    return space, tasks


@functools.lru_cache(maxsize=2)
def load_surrogate(path: str | Path = DEFAULT_DATA) -> LCBenchSurrogate:
    """One surrogate per process and folder (a worker process loads it once, ~0.1 s)."""
    return LCBenchSurrogate.load(path)


# ------------------------------------------------------------------ reference outputs
@dataclass(frozen=True)
class ReferenceOutputs:
    """``reference_outputs.csv``: configurations and yahpo-gym 1.0.2's six outputs."""

    tasks: tuple[str, ...]
    configs: list[dict[str, float]]
    epochs: np.ndarray
    targets: dict[str, np.ndarray]


def read_reference_outputs(path: str | Path = DEFAULT_DATA) -> ReferenceOutputs:
    with (Path(path) / "reference_outputs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return ReferenceOutputs(
        tasks=tuple(r[TASK_PARAM] for r in rows),
        configs=[{name: float(r[name]) for name in HYPERPARAMETERS} for r in rows],
        epochs=np.array([int(r["epoch"]) for r in rows]),
        targets={name: np.array([float(r[name]) for r in rows]) for name in TARGETS},
    )


def reference_errors(
    surrogate: LCBenchSurrogate, reference: ReferenceOutputs, *, batched: bool
) -> dict[str, tuple[float, float]]:
    """Max absolute and relative error per target: one call per task, or one per row."""
    got = {name: np.empty(len(reference.epochs)) for name in TARGETS}
    tasks = np.array(reference.tasks)
    groups = [np.flatnonzero(tasks == t) for t in dict.fromkeys(reference.tasks)]
    if not batched:
        groups = [np.array([i]) for i in range(len(tasks))]
    for rows in groups:
        out = surrogate.evaluate(
            tasks[rows[0]], [reference.configs[i] for i in rows], reference.epochs[rows]
        )
        for name in TARGETS:
            got[name][rows] = out[name]
    errors = {}
    for name in TARGETS:
        diff = np.abs(got[name] - reference.targets[name])
        errors[name] = (float(diff.max()), float((diff / np.abs(reference.targets[name])).max()))
    return errors


# ------------------------------------------------------------------ reference best values
REFERENCE_N = 100_000
REFERENCE_SEED = 0
REFERENCE_CHUNK = 20_000
REFERENCE_RECHECK = 10


def random_search_best(
    surrogate: LCBenchSurrogate,
    task: str,
    *,
    n: int = REFERENCE_N,
    seed: int = REFERENCE_SEED,
) -> tuple[float, dict[str, float]]:
    """Best val_accuracy at epoch 52 of ``n`` random configurations, and that configuration.

    Draws come from ``default_rng([seed, int(task)])``, so each task's sample is its own and
    reproducible. Batches of ``REFERENCE_CHUNK`` rows are ranked; the top ``REFERENCE_RECHECK``
    are then evaluated one at a time, which is yahpo-gym's per-configuration value (a batch can
    differ by float32 rounding; see the module docstring).
    """
    rng = np.random.default_rng([seed, int(task)])
    top_values, top_configs = np.empty(0), {name: np.empty(0) for name in HYPERPARAMETERS}
    for start in range(0, n, REFERENCE_CHUNK):
        columns = surrogate.sample(min(REFERENCE_CHUNK, n - start), rng)
        values = surrogate.evaluate(task, columns, MAX_EPOCH)["val_accuracy"]
        values = np.concatenate([top_values, values])
        merged = {k: np.concatenate([top_configs[k], columns[k]]) for k in HYPERPARAMETERS}
        keep = np.argsort(-values, kind="stable")[:REFERENCE_RECHECK]
        top_values, top_configs = values[keep], {k: v[keep] for k, v in merged.items()}
    best_value, best_config = -math.inf, {}
    for i in range(len(top_values)):
        config = {
            name: int(v) if surrogate.space[name].integer else float(v)
            for name, v in ((k, top_configs[k][i]) for k in HYPERPARAMETERS)
        }
        value = float(surrogate.evaluate(task, [config], MAX_EPOCH)["val_accuracy"][0])
        if value > best_value:
            best_value, best_config = value, config
    return best_value, best_config


def write_reference_best(
    surrogate: LCBenchSurrogate,
    path: Path = REFERENCE_BEST,
    *,
    tasks: Sequence[str] = TASKS,
    n: int = REFERENCE_N,
    seed: int = REFERENCE_SEED,
) -> dict[str, Any]:
    """Compute every task's reference best and write them as JSON; returns the payload."""
    payload: dict[str, Any] = {
        "note": (
            f"Best val_accuracy (%) at epoch {MAX_EPOCH} of a random search of {n:,} "
            "configurations per task, the regret reference of benchmarks/lcbench.py. Drawn "
            "uniformly from config_space.json (log-uniform for batch_size, learning_rate and "
            "max_units; integers rounded, as param_set.R) with numpy's "
            "default_rng([seed, int(task)]), evaluated in batches by "
            f"benchmarks/lcbench_surrogate.py; the top {REFERENCE_RECHECK} re-evaluated one at "
            "a time (yahpo-gym 1.0.2's per-configuration value). Regenerate with "
            "`python benchmarks/lcbench_surrogate.py --reference-best`."
        ),
    }
    start = time.perf_counter()
    for task in tasks:
        value, config = random_search_best(surrogate, task, n=n, seed=seed)
        payload[task] = {
            "best_val_accuracy": value,
            "n_random": n,
            "seed": seed,
            "best_config": config,
        }
        print(f"{task:>7s}: {value:.4f} ({time.perf_counter() - start:.1f} s)", flush=True)
    payload["seconds"] = round(time.perf_counter() - start, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return payload


def read_reference_best(path: str | Path = REFERENCE_BEST) -> dict[str, float]:
    """``{task: best val_accuracy}`` from a ``write_reference_best`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; compute it with `python benchmarks/lcbench_surrogate.py "
            "--reference-best`."
        )
    payload = json.loads(path.read_text())
    return {task: float(payload[task]["best_val_accuracy"]) for task in TASKS if task in payload}


# ------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the lcbench folder")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="compare with reference_outputs")
    action.add_argument(
        "--reference-best", action="store_true", help=f"write {REFERENCE_BEST.name}"
    )
    parser.add_argument("--out", type=Path, default=REFERENCE_BEST)
    parser.add_argument("--n", type=int, default=REFERENCE_N, help="random configurations")
    parser.add_argument("--seed", type=int, default=REFERENCE_SEED)
    args = parser.parse_args(argv)
    surrogate = LCBenchSurrogate.load(args.data)
    if args.check:
        reference = read_reference_outputs(args.data)
        for batched in (False, True):
            start = time.perf_counter()
            errors = reference_errors(surrogate, reference, batched=batched)
            label = "one call per task" if batched else "one call per row"
            print(f"{label} ({time.perf_counter() - start:.2f} s): max abs / rel error")
            for name, (absolute, relative) in errors.items():
                print(f"  {name:24s} {absolute:.3g} / {relative:.3g}")
        return 0
    payload = write_reference_best(surrogate, args.out, n=args.n, seed=args.seed)
    print(f"{args.out}: {len(TASKS)} tasks in {payload['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

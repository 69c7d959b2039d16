"""The pretraining set: architectures of a search space with their zero-cost metrics.

Thesis 5.2.3: before the search, the ensemble learns zero-cost metrics (parameters, FLOPs,
latency, memory) of a few thousand architectures, measured on untrained networks. This module
builds that table from the same define-by-run ``search_space`` function the sampler replays,
by building each architecture's PyTorch model and measuring it, or takes a table measured
elsewhere (another framework, a benchmark, thesis 6.3).

Measuring 2,000 models takes minutes, so the table is written row by row to a JSON Lines cache:
a killed run resumes where it stopped. The first line of the cache identifies the search space,
the example input and the measurement settings; a cache made for anything else is refused, never
used silently. The cache is JSON, so sharing it is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
import csv
from dataclasses import dataclass
import functools
import hashlib
import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Any
import warnings

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import IntDistribution
from optuna.distributions import distribution_to_json
import torch
from tqdm.auto import tqdm

from optuna_deepens import zero_cost
from optuna_deepens._torch import torch_threads
from optuna_deepens.dry_run import SearchSpaceFunction
from optuna_deepens.dry_run import dry_run
from optuna_deepens.dry_run import explore
from optuna_deepens.encoding import SearchSpaceEncoder
from optuna_deepens.encoding import union_search_space
from optuna_deepens.ensemble import Rows
from optuna_deepens.transforms import metric_target

CACHE_FORMAT = "optuna-deepens/pretraining-set"
CACHE_VERSION = 1
DEFAULT_METRICS = zero_cost.METRIC_NAMES
_EXPLORE_RUNS = 256  # Dry runs that fingerprint a search space (seeded, so deterministic).
_MAX_DRAWS_PER_ARCHITECTURE = 50  # A space smaller than asked for is exhausted, not looped on.

ModelBuilder = Callable[[Any], torch.nn.Module]


class CacheError(ValueError):
    """A pretraining cache that cannot be used: made for another setting, or damaged."""


@dataclass(frozen=True)
class PretrainingSet:
    """Architectures (as Optuna params) and their raw zero-cost metrics.

    Attributes:
        distributions: The search space the params belong to; it fixes the encoding.
        params: One dict of external parameter values per architecture (active ones only).
        metrics: Metric name to ``[n]`` raw values (``NaN`` where not measured).
    """

    distributions: dict[str, BaseDistribution]
    params: tuple[dict[str, Any], ...]
    metrics: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for name, values in self.metrics.items():
            if len(values) != len(self.params):
                raise ValueError(
                    f"Metric {name!r} has {len(values)} values for "
                    f"{len(self.params)} architectures."
                )
            finite = values[np.isfinite(values)]
            if np.any(finite < 0) or np.any(np.isinf(values)):
                raise ValueError(
                    f"Metric {name!r} has negative or infinite values; zero-cost metrics are "
                    "non-negative sizes and times. Leave a cell empty (NaN) when unknown."
                )

    def __len__(self) -> int:
        return len(self.params)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self.metrics)

    def rows(self, encoder: SearchSpaceEncoder, metrics: Sequence[str] | None = None) -> Rows:
        """Encoded features and model-scale metric targets for the ensemble."""
        names = self.metric_names if metrics is None else tuple(metrics)
        missing = set(names) - set(self.metrics)
        if missing:
            raise ValueError(
                f"The pretraining set has no metric {sorted(missing)}; it has "
                f"{list(self.metrics)}."
            )
        internal = encoder.to_internal(self.params)
        return Rows(
            encoder.encode(internal), {name: metric_target(self.metrics[name]) for name in names}
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        search_space: SearchSpaceFunction | Mapping[str, BaseDistribution],
        metrics: Sequence[str] | None = None,
    ) -> PretrainingSet:
        """A table measured elsewhere: one record per architecture, params and metrics as keys.

        Args:
            records: Dicts holding parameter values (keys of the space) and metric values.
            search_space: The ``search_space`` function the sampler replays, or its
                distributions. A function also checks each record: a record it would not
                produce (an unknown choice, an inactive parameter set) is an error.
            metrics: Metric keys to read; by default every key that is not a parameter.
        """
        rng = np.random.default_rng(0)
        distributions = _distributions(search_space, rng)
        return cls._from_records(records, search_space, distributions, rng, metrics)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        search_space: SearchSpaceFunction | Mapping[str, BaseDistribution],
        metrics: Sequence[str] | None = None,
    ) -> PretrainingSet:
        """A CSV with one column per parameter and per metric; an empty cell is inactive.

        Cells are text, so each parameter cell is converted to the type its distribution
        expects (a categorical cell matches the choice whose ``str`` it equals).
        """
        try:
            with open(path, newline="", encoding="utf-8") as file:
                records = list(csv.DictReader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ValueError(f"{path}: cannot read the pretraining CSV ({error}).") from error
        rng = np.random.default_rng(0)
        distributions = _distributions(search_space, rng)
        typed = []
        for line, record in enumerate(records, start=2):  # Line 1 is the header.
            row = {}
            for column, cell in record.items():
                try:
                    row[column] = _parse_cell(distributions.get(column), cell)
                except ValueError as error:
                    raise ValueError(f"{path}, line {line}, column {column!r}: {error}") from None
            typed.append(row)
        return cls._from_records(typed, search_space, distributions, rng, metrics)

    @classmethod
    def _from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        search_space: SearchSpaceFunction | Mapping[str, BaseDistribution],
        distributions: dict[str, BaseDistribution],
        rng: np.random.Generator,
        metrics: Sequence[str] | None,
    ) -> PretrainingSet:
        """:meth:`from_records` once the space is explored (``distributions``, with ``rng``)."""
        if not records:
            raise ValueError("A pretraining set needs at least one architecture.")
        names = (
            sorted({k for record in records for k in record} - set(distributions))
            if metrics is None
            else list(metrics)
        )
        params: list[dict[str, Any]] = []
        for i, record in enumerate(records):
            row = {k: v for k, v in record.items() if k not in names and not _is_empty(v)}
            if callable(search_space):
                replayed = dry_run(search_space, row, rng)
                if replayed.params != row:
                    raise ValueError(
                        f"Record {i} ({row}) is not an architecture of the search space: the "
                        f"search_space function makes it {replayed.params}. Fix the record or "
                        "the function, or name the metric columns with metrics=."
                    )
                distributions.update(replayed.distributions)
            unknown = set(row) - set(distributions)
            if unknown:
                raise ValueError(
                    f"Record {i} has keys {sorted(unknown)} that are neither parameters of the "
                    f"search space nor metrics {names}."
                )
            params.append(row)
        values = {
            name: np.array([_as_float(record.get(name)) for record in records]) for name in names
        }
        return cls(union_search_space([distributions]), tuple(params), values)


def _distributions(
    search_space: SearchSpaceFunction | Mapping[str, BaseDistribution], rng: np.random.Generator
) -> dict[str, BaseDistribution]:
    """The given distributions, or what seeded dry runs of a ``search_space`` function meet."""
    if callable(search_space):
        return dict(explore(search_space, rng, _EXPLORE_RUNS))
    return dict(search_space)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _as_float(value: Any) -> float:
    if _is_empty(value):
        return math.nan
    return float(value)


def _parse_cell(distribution: BaseDistribution | None, cell: str | None) -> Any:
    """A CSV cell as the type its distribution expects; metrics and unknown columns as floats."""
    if cell is None or cell == "":
        return None
    if isinstance(distribution, CategoricalDistribution):
        for choice in distribution.choices:
            if str(choice) == cell:
                return choice
        return cell  # from_records reports it as not an architecture of the space.
    number = float(cell)  # Text where a number belongs raises: from_csv says where.
    if isinstance(distribution, IntDistribution):
        if not number.is_integer():
            raise ValueError(f"{cell!r} is not a whole number, and the parameter is an int.")
        return int(number)
    return number


# ------------------------------------------------------------------------ measured tables
def fingerprint(
    space: Mapping[str, BaseDistribution],
    example_input: torch.Tensor,
    build_model: ModelBuilder,
    metrics: Sequence[str],
    measure_options: zero_cost.MeasureOptions,
) -> dict[str, Any]:
    """What a cached table depends on; a cache whose header differs is stale.

    ``space`` is what seeded dry runs of the search space found (:func:`explore`).
    """
    space_json = json.dumps(
        {name: distribution_to_json(d) for name, d in sorted(space.items())}, sort_keys=True
    )
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "space_sha256": hashlib.sha256(space_json.encode()).hexdigest(),
        "model_builder": callable_identity(build_model),
        "input_shape": list(example_input.shape),
        "input_dtype": str(example_input.dtype),
        "device": str(example_input.device),
        "metrics": list(metrics),
        "measure_options": measure_options.non_defaults(),
    }


def callable_identity(function: Callable[..., Any]) -> str:
    """A name for a function that is stable across runs, arguments of a ``partial`` included.

    Only the name: a changed body is not seen, which is why the cache header also names the
    search space, input and settings, and why a changed builder needs a new cache path.
    """
    if isinstance(function, functools.partial):
        arguments = [repr(a) for a in function.args]
        arguments += [f"{k}={v!r}" for k, v in sorted(function.keywords.items())]
        return f"{callable_identity(function.func)}({', '.join(arguments)})"
    module = getattr(function, "__module__", None) or type(function).__module__
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}"


def build_pretraining_set(
    search_space: SearchSpaceFunction,
    build_model: ModelBuilder,
    example_input: torch.Tensor,
    *,
    n_architectures: int = 2000,
    cache: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_workers: int | None = None,
    seed: int = 0,
    show_progress_bar: bool = True,
    measure_options: zero_cost.MeasureOptions | Mapping[str, Any] | None = None,
) -> PretrainingSet:
    """Sample architectures from ``search_space``, build and measure each, cache the table.

    Args:
        search_space: The function the sampler replays: ``suggest_*`` calls only, returning
            whatever ``build_model`` takes (a config).
        build_model: Config to an untrained ``torch.nn.Module``.
        example_input: One input batch, on the device to measure on.
        n_architectures: Distinct architectures wanted (fewer if the space is smaller).
        cache: JSON Lines file written row by row; an existing file for the same setting is
            resumed, one for another setting raises :class:`CacheError`.
        metrics: Zero-cost metrics to measure, from ``zero_cost.METRIC_NAMES``.
        n_workers: Processes measuring in parallel; ``None`` uses every core. Each measures
            latency on one thread, so latencies are comparable with each other.
        seed: Seeds the architecture draws; the same seed draws the same architectures.
        show_progress_bar: Show a ``tqdm`` bar.
        measure_options: :class:`optuna_deepens.zero_cost.MeasureOptions`, or a dict of its
            fields (``batch_size``, ``warmup``, ``min_run_time``, ``n_threads``).

    Architectures whose model fails to build or run are recorded with their error in the
    cache, skipped, and counted in a warning; the search space should exclude them.
    """
    unknown = set(metrics) - set(zero_cost.METRIC_NAMES)
    if unknown:
        raise ValueError(
            f"Unknown metrics {sorted(unknown)}; choose from {zero_cost.METRIC_NAMES}."
        )
    options = zero_cost.MeasureOptions.resolve(measure_options)
    explored = explore(search_space, np.random.default_rng(0), _EXPLORE_RUNS)
    header = fingerprint(explored, example_input, build_model, metrics, options)
    done = _read_cache(Path(cache), header) if cache is not None else {}
    wanted = _draw_architectures(search_space, n_architectures, seed)
    task = _MeasureTask(search_space, build_model, example_input, tuple(metrics), options)
    rows = _measure_missing(
        task,
        wanted,
        done,
        _CacheWriter(cache, header),
        n_workers=n_workers,
        show_progress_bar=show_progress_bar,
    )
    return _table(search_space, explored, rows, metrics)


def _measure_missing(
    task: _MeasureTask,
    wanted: Sequence[dict[str, Any]],
    done: dict[str, dict[str, Any]],
    writer: _CacheWriter,
    *,
    n_workers: int | None,
    show_progress_bar: bool,
) -> list[dict[str, Any]]:
    """The rows of ``wanted``: from ``done`` (the cache) or measured now and written to it."""
    todo = [params for params in wanted if _key(params) not in done]
    if todo:
        with writer:
            progress = tqdm(
                total=len(wanted),
                initial=len(wanted) - len(todo),
                desc="Measuring architectures",
                disable=not show_progress_bar,
            )
            for row in _measure_all(task, todo, n_workers):
                done[_key(row["params"])] = row
                writer.write(row)
                progress.update()
            progress.close()
    return [done[_key(params)] for params in wanted]


def _table(
    search_space: SearchSpaceFunction,
    explored: Mapping[str, BaseDistribution],
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
) -> PretrainingSet:
    """The measured rows as a set; failed ones are left out with a warning."""
    failed = [row for row in rows if "error" in row]
    measured = [row for row in rows if "error" not in row]
    if not measured:
        raise zero_cost.ModelMeasurementError(
            f"None of the {len(rows)} architectures could be measured; the first error: "
            f"{failed[0]['error']}"
        )
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(rows)} architectures failed to build or run and are left out "
            f"of the pretraining set (first: {failed[0]['error']}). Exclude them in the "
            "search_space function.",
            stacklevel=3,  # The caller of build_pretraining_set.
        )
    distributions: dict[str, BaseDistribution] = dict(explored)
    rng = np.random.default_rng(0)
    for row in measured:
        distributions.update(dry_run(search_space, row["params"], rng).distributions)
    return PretrainingSet(
        union_search_space([distributions]),
        tuple(row["params"] for row in measured),
        {name: np.array([row["metrics"][name] for row in measured]) for name in metrics},
    )


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _draw_architectures(
    search_space: SearchSpaceFunction, n: int, seed: int
) -> list[dict[str, Any]]:
    """The first ``n`` distinct architectures of a seeded stream of random dry runs."""
    rng = np.random.default_rng(seed)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(n * _MAX_DRAWS_PER_ARCHITECTURE):
        params = dry_run(search_space, {}, rng).params
        seen.setdefault(_key(params), params)
        if len(seen) == n:
            break
    return list(seen.values())


@dataclass(frozen=True)
class _MeasureTask:
    search_space: SearchSpaceFunction
    build_model: ModelBuilder
    example_input: torch.Tensor
    metrics: tuple[str, ...]
    options: zero_cost.MeasureOptions

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        """A cache row: the params and their metrics, or the error that stopped them."""
        name = f"architecture {params}"
        try:
            config = dry_run(self.search_space, params, np.random.default_rng(0)).returned
            _, measured = zero_cost.build_and_measure(
                lambda: self.build_model(config),
                self.example_input,
                name=name,
                metrics=self.metrics,
                options=self.options,
            )
        except Exception as error:  # One bad architecture must not stop the table.
            return {"params": params, "error": f"{type(error).__name__}: {error}"}
        return {"params": params, "metrics": measured}


_worker_task: _MeasureTask | None = None


def _init_worker(task: _MeasureTask) -> None:
    global _worker_task
    torch.set_num_threads(1)  # One process per core; threads would fight over them.
    _worker_task = task


def _run_in_worker(params: dict[str, Any]) -> dict[str, Any]:
    assert _worker_task is not None
    return _worker_task(params)


def _measure_all(
    task: _MeasureTask, todo: Sequence[dict[str, Any]], n_workers: int | None
) -> Iterator[dict[str, Any]]:
    """Rows in the order of ``todo``, measured in ``n_workers`` forked processes.

    Fork (where the platform has it) hands the user's functions to the workers without
    pickling them, so lambdas and functions defined in ``__main__`` work.
    """
    n_workers = os.cpu_count() or 1 if n_workers is None else n_workers
    if n_workers <= 1 or len(todo) == 1:
        with torch_threads(1):
            yield from map(task, todo)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(
        max_workers=n_workers, mp_context=context, initializer=_init_worker, initargs=(task,)
    ) as pool:
        yield from pool.map(_run_in_worker, todo, chunksize=4)


# -------------------------------------------------------------------------------- cache
def _read_cache(path: Path, header: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of a cache written for ``header``; a torn last line (a killed run) is dropped."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    lines = path.read_bytes().split(b"\n")
    try:
        found = json.loads(lines[0])
    except json.JSONDecodeError as error:
        raise CacheError(
            f"{path} is not a pretraining cache (its first line is not JSON: {error}). Delete "
            "it or pass another cache path."
        ) from error
    if not isinstance(found, dict) or found.get("format") != CACHE_FORMAT:
        raise CacheError(f"{path} is not a pretraining cache. Delete it or pass another path.")
    if found != dict(header):
        differences = sorted(k for k in set(found) | set(header) if found.get(k) != header.get(k))
        raise CacheError(
            f"The pretraining cache {path} was made for another setting (it differs in "
            f"{differences}). Delete it to measure again, or pass another cache path."
        )
    rows: dict[str, dict[str, Any]] = {}
    good_bytes = len(lines[0]) + 1
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "params" not in row:
                raise ValueError("not a row")
            if "error" not in row:
                row["metrics"] = {k: float(v) for k, v in row["metrics"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            if number == len(lines):  # Torn write of a killed run: drop it, measure again.
                with open(path, "r+b") as file:
                    file.truncate(good_bytes)
                break
            raise CacheError(
                f"Line {number} of the pretraining cache {path} is damaged ({error}). Delete "
                "the file to measure again."
            ) from error
        rows[_key(row["params"])] = row
        good_bytes += len(line) + 1
    return rows


class _CacheWriter:
    """Appends rows to a cache (creating it with its header), or does nothing without a path."""

    def __init__(self, path: str | os.PathLike[str] | None, header: Mapping[str, Any]) -> None:
        self._path = None if path is None else Path(path)
        self._header = header
        self._file: Any = None

    def __enter__(self) -> _CacheWriter:
        if self._path is not None:
            new = not self._path.exists() or self._path.stat().st_size == 0
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "a")
            if new:
                self._file.write(json.dumps(self._header) + "\n")
        return self

    def write(self, row: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()

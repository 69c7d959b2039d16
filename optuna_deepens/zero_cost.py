"""Zero-cost metrics: cheap measurements of an *untrained* PyTorch model.

A NAS surrogate can be pretrained on quantities that are known before any training happens
(size, compute, speed, memory) and then fine-tuned on the few expensive validation scores of a
study. This module measures those quantities and stores them in a trial's user attributes, so that
they travel with the study through any Optuna storage.

Metrics and their units (``METRIC_NAMES``):

* ``params``: number of trainable parameters (``requires_grad``), shared parameters counted once.
* ``flops``: floating-point operations of one forward pass, as counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2 FLOPs; matmuls and
  convolutions dominate, element-wise ops and biases are not counted).
* ``latency_ms``: median wall-clock time of one forward pass in milliseconds.
* ``memory_mb``: peak memory of one forward pass in MiB (``2**20`` bytes): parameters and
  buffers plus the peak of the tensors allocated during the forward pass (the input excluded).

Typical use inside an objective::

    def objective(trial):
        model = build_model(trial)
        zero_cost.measure_and_record(trial, model, torch.randn(1, 3, 32, 32))
        return train_and_validate(model)
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
import math
import numbers
from typing import Any
from typing import Protocol
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from optuna_deepens._torch import torch_threads
from optuna_deepens._validation import check_float
from optuna_deepens._validation import check_int

METRIC_NAMES: tuple[str, ...] = ("params", "flops", "latency_ms", "memory_mb")
USER_ATTR_PREFIX = "zc_"

_MIB = float(2**20)

ExampleInput = torch.Tensor | tuple[torch.Tensor, ...]


class ModelMeasurementError(RuntimeError):
    """An architecture could not be built or run while measuring its zero-cost metrics.

    The message names the architecture and the original error, which is also chained as
    ``__cause__``.
    """


class _SupportsSetUserAttr(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True, kw_only=True)
class MeasureOptions:
    """How latency and memory are measured: one value, passed whole to every measurement.

    A pretraining table and the trials that use it must be measured alike, so the options travel
    together (and are recorded in the table's cache). The functions that take ``options`` also
    take its fields by keyword: ``measure(model, x, warmup=1)`` is
    ``measure(model, x, options=MeasureOptions(warmup=1))``.

    Attributes:
        batch_size: If given, the input is repeated along dim 0 to this batch size for latency
            and memory, which depend on the deployment batch size; ``params`` and ``flops`` use
            the example input as given, so a batch of one gives FLOPs per sample.
        warmup: Untimed forward passes first, so that one-off costs (lazy initialisation, kernel
            selection, caches) do not count.
        min_run_time: Seconds spent timing at least; longer is steadier.
        n_threads: Intra-op CPU threads while timing. One thread by default, because latencies
            measured with one thread are comparable across machines and concurrent trials.
            PyTorch's thread count is process-wide, so time one model at a time per process.
    """

    batch_size: int | None = None
    warmup: int = 3
    min_run_time: float = 0.2
    n_threads: int = 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        checked: dict[str, int | float] = {}
        if self.batch_size is not None:
            why = "or None to measure the example input's own batch"
            checked["batch_size"] = check_int(
                owner, "batch_size", self.batch_size, minimum=1, why=why
            )
        checked["warmup"] = check_int(owner, "warmup", self.warmup, minimum=0)
        checked["min_run_time"] = check_float(
            owner, "min_run_time", self.min_run_time, positive=True
        )
        why = "one thread, the default, gives latencies comparable across machines"
        checked["n_threads"] = check_int(owner, "n_threads", self.n_threads, minimum=1, why=why)
        for name, value in checked.items():
            # Plain int and float: a numpy scalar would not serialise into a cache header.
            object.__setattr__(self, name, value)

    @classmethod
    def resolve(
        cls, options: MeasureOptions | Mapping[str, Any] | None = None, **overrides: Any
    ) -> MeasureOptions:
        """``options`` (an instance, a mapping of fields, or the defaults) with ``overrides``.

        Raises:
            TypeError: ``options`` of another type, or a name that is not a field.
        """
        if options is not None and not isinstance(options, (MeasureOptions, Mapping)):
            raise TypeError(
                f"options must be a MeasureOptions, got {type(options).__name__}; pass e.g. "
                "options=MeasureOptions(warmup=1)."
            )
        base = options if isinstance(options, MeasureOptions) else cls()
        given = {**(options if isinstance(options, Mapping) else {}), **overrides}
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise TypeError(f"Unknown measure options {unknown}; MeasureOptions has {names}.")
        return replace(base, **given) if given else base

    def non_defaults(self) -> dict[str, Any]:
        """The fields that differ from their defaults, by name (what a cache header records)."""
        return {
            field.name: getattr(self, field.name)
            for field in sorted(fields(self), key=lambda field: field.name)
            if getattr(self, field.name) != field.default
        }


# --------------------------------------------------------------------------------------------
# Helpers.


def _as_args(example_input: ExampleInput) -> tuple[torch.Tensor, ...]:
    # A tuple is unpacked as positional arguments, so multi-input models work too.
    return tuple(example_input) if isinstance(example_input, tuple) else (example_input,)


def _device_of(args: tuple[torch.Tensor, ...]) -> torch.device:
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg.device
    return torch.device("cpu")


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd; restores every submodule's own mode afterwards.

    Submodules are restored one by one because a model can legitimately mix modes (e.g. a frozen
    BatchNorm kept in eval mode inside a model that is training).
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _on_cuda_device(device: torch.device) -> Iterator[None]:
    # torch.utils.benchmark synchronises the *current* CUDA device, so make it the input's one.
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


def _batched(example_input: ExampleInput, batch_size: int | None) -> ExampleInput:
    """Repeat each input along dim 0 to ``batch_size`` rows, as real (non-aliased) memory."""
    if batch_size is None:
        return example_input

    def expand(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() == 0 or tensor.shape[0] == 0:
            shape = tuple(tensor.shape)
            raise ValueError(f"batch_size needs inputs with a non-empty batch dim, got {shape}.")
        index = torch.arange(batch_size, device=tensor.device) % tensor.shape[0]
        return tensor.index_select(0, index)

    if isinstance(example_input, tuple):
        return tuple(expand(t) for t in example_input)
    return expand(example_input)


def _state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers, counting each shared storage once."""
    tensors = (*model.parameters(), *model.buffers())
    storages = {(t.device, t.untyped_storage().data_ptr()): t.untyped_storage() for t in tensors}
    return sum(storage.nbytes() for storage in storages.values())


def _storages(tree: Any) -> Iterator[torch.UntypedStorage]:
    for leaf in tree_leaves(tree):
        if isinstance(leaf, torch.Tensor) and leaf.layout == torch.strided:
            yield leaf.untyped_storage()


class _LiveStorageTracker(TorchDispatchMode):
    """Tracks the bytes held by the storages that operators create, and their peak.

    Each operator output's storage is counted when first seen and released by a weakref callback
    when the storage dies. PyTorch preserves a storage's Python object for as long as the C++
    storage lives, so the callback fires exactly when the memory is freed, by reference counting,
    hence deterministically. Views and in-place results share a storage and are counted once.
    Storages that existed before (parameters, buffers, the input) are registered as ``known`` and
    never counted. This is the approach of ``torch.distributed._tools.MemTracker``, reduced to the
    forward pass.
    """

    def __init__(self, known: Sequence[torch.UntypedStorage]) -> None:
        super().__init__()
        # Strong references keep the ids of the known storages from being reused.
        self._known = {id(storage): storage for storage in known}
        self._live: dict[int, weakref.ref[torch.UntypedStorage]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int, nbytes: int) -> None:
        if self._live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for storage in _storages(out):
            key = id(storage)
            if key in self._known or key in self._live:
                continue
            nbytes = storage.nbytes()
            self._live[key] = weakref.ref(
                storage, lambda _, key=key, nbytes=nbytes: self._release(key, nbytes)
            )
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        return out


def check_metric(name: str, value: Any) -> float:
    """A metric as a user attr: a finite real ``>= 0``, as a plain float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Zero-cost metric {name!r} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"Zero-cost metric {name!r} must be finite and >= 0, got {value}.")
    return value


# --------------------------------------------------------------------------------------------
# Single metrics.


def count_parameters(model: torch.nn.Module) -> float:
    """Number of trainable parameters; frozen ones (``requires_grad=False``) are not counted.

    ``Module.parameters()`` yields a parameter shared between submodules once, so tied weights
    are counted once.
    """
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_flops(model: torch.nn.Module, example_input: ExampleInput) -> float:
    """FLOPs of one forward pass on ``example_input``, in eval mode and without autograd.

    Counted by :class:`~torch.utils.flop_counter.FlopCounterMode`, which derives FLOPs from the
    shapes of matmul, convolution and attention operators (2 per multiply-add). It does not time
    anything, so the count is exact and independent of the machine.
    """
    args = _as_args(example_input)
    with _inference(model):
        with FlopCounterMode(display=False) as counter:
            model(*args)
    return float(counter.get_total_flops())


def measure_latency_ms(
    model: torch.nn.Module,
    example_input: ExampleInput,
    *,
    options: MeasureOptions | None = None,
    **overrides: Any,
) -> float:
    """Median latency of one forward pass in milliseconds, on the device of ``example_input``.

    Uses :class:`torch.utils.benchmark.Timer`, which synchronises the accelerator around each
    timed block and picks a block size that makes the timer overhead negligible. The median of
    the blocks is robust to the occasional slow run on a busy machine.

    Args:
        options: Batch size, warm-up, timing and threads (:class:`MeasureOptions`); its fields
            can also be given by keyword, e.g. ``n_threads=2``.
    """
    options = MeasureOptions.resolve(options, **overrides)
    return _latency_ms(model, _batched(example_input, options.batch_size), options)


def _latency_ms(
    model: torch.nn.Module, example_input: ExampleInput, options: MeasureOptions
) -> float:
    args = _as_args(example_input)

    def forward() -> None:
        model(*args)

    n_threads = options.n_threads
    with _inference(model), _on_cuda_device(_device_of(args)), torch_threads(n_threads):
        for _ in range(options.warmup):
            forward()
        timer = Timer(stmt="forward()", globals={"forward": forward}, num_threads=n_threads)
        measurement = timer.blocked_autorange(min_run_time=options.min_run_time)
    return float(measurement.median * 1e3)


def measure_peak_memory_mb(model: torch.nn.Module, example_input: ExampleInput) -> float:
    """Peak memory of one forward pass in MiB: model state plus the peak of new tensors.

    Model state is the parameters and buffers. The input is not counted, since it is the same
    for every architecture of a search space.

    On CUDA the caching allocator's statistics are used (``max_memory_allocated`` after
    ``reset_peak_memory_stats``, minus what was allocated before), so kernel workspaces count
    too; one untracked pass runs first, so that workspaces a library allocates once and keeps
    (cuBLAS's) do not. On CPU (and other devices) PyTorch keeps no allocator statistics, so the
    tensors are tracked instead: a ``TorchDispatchMode`` sees every operator output and a weakref
    on its storage tells when that memory is freed. Unlike ``torch.profiler(profile_memory=True)``,
    which reports allocations per operator but no timeline to take a peak of without private
    APIs, this is cheap, needs no profiler build and gives the same number on every call.
    Scratch memory that a kernel allocates and frees internally is not seen.
    """
    args = _as_args(example_input)
    device = _device_of(args)
    state = _state_bytes(model)
    with _inference(model):
        if device.type == "cuda":
            # An untracked pass first: the first matmul on a stream allocates cuBLAS(Lt)'s
            # persistent workspace through the caching allocator, which would otherwise count
            # as this model's memory once per process, in whichever measurement ran first.
            model(*args)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            output = model(*args)
            torch.cuda.synchronize(device)
            activations = torch.cuda.max_memory_allocated(device) - before
            del output
        else:
            known = [*model.parameters(), *model.buffers(), *args]
            tracker = _LiveStorageTracker([s for t in known for s in _storages(t)])
            with tracker:
                output = model(*args)
            del output
            activations = tracker.peak
    return (state + max(activations, 0)) / _MIB


# --------------------------------------------------------------------------------------------
# All metrics.


def measure(
    model: torch.nn.Module,
    example_input: ExampleInput,
    *,
    metrics: Sequence[str] = METRIC_NAMES,
    options: MeasureOptions | None = None,
    name: str | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """Measure the requested zero-cost metrics of an untrained model.

    Args:
        model: The model, on the same device as ``example_input``. Its training mode is restored.
        example_input: A tensor, or a tuple of tensors passed as positional arguments.
        metrics: Names from :data:`METRIC_NAMES`.
        options: Batch size, warm-up, timing and threads (:class:`MeasureOptions`); its fields
            can also be given by keyword, e.g. ``batch_size=64``.
        name: The architecture, e.g. ``"trial 12"`` or a repr of its parameters, for errors.

    Returns:
        ``{metric: value}`` for exactly the requested metrics, as finite non-negative floats.

    Raises:
        ValueError: An unknown metric name or an invalid option.
        ModelMeasurementError: The model raised while running, e.g. a shape mismatch of an
            invalid architecture.
    """
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"Unknown zero-cost metrics {unknown}; choose from {METRIC_NAMES}.")
    options = MeasureOptions.resolve(options, **overrides)
    name = name if name is not None else type(model).__name__

    def batched() -> ExampleInput:
        return _batched(example_input, options.batch_size)

    functions: dict[str, Callable[[], float]] = {
        "params": lambda: count_parameters(model),
        "flops": lambda: count_flops(model, example_input),
        "latency_ms": lambda: _latency_ms(model, batched(), options),
        "memory_mb": lambda: measure_peak_memory_mb(model, batched()),
    }
    results: dict[str, float] = {}
    for metric in dict.fromkeys(metrics):
        try:
            value = functions[metric]()
        except Exception as err:
            raise ModelMeasurementError(
                f"Measuring {metric!r} of architecture {name} failed: {type(err).__name__}: {err}"
            ) from err
        results[metric] = check_metric(metric, value)
    return results


def build_and_measure(
    build: Callable[[], torch.nn.Module],
    example_input: ExampleInput,
    *,
    name: str,
    metrics: Sequence[str] = METRIC_NAMES,
    options: MeasureOptions | None = None,
    **overrides: Any,
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Build a model with ``build()`` and measure it; returns the model and its metrics.

    Building fails in user code when a combination of choices is invalid (e.g. more pooling
    layers than the input resolution allows). Such a failure is raised as
    :class:`ModelMeasurementError` naming the architecture, like a failure while running it.
    ``options`` and ``overrides`` are :func:`measure`'s, checked before building.
    """
    options = MeasureOptions.resolve(options, **overrides)
    try:
        model = build()
    except Exception as err:
        raise ModelMeasurementError(
            f"Building architecture {name} failed: {type(err).__name__}: {err}. "
            "The search space must exclude this combination in its suggest function."
        ) from err
    return model, measure(model, example_input, metrics=metrics, options=options, name=name)


# --------------------------------------------------------------------------------------------
# Trial user attributes.


def record(trial: _SupportsSetUserAttr, metrics: Mapping[str, float]) -> None:
    """Store metrics as user attributes ``zc_<name>`` of a trial.

    All values are validated before any is written, so a bad value leaves the trial untouched.
    Works with :class:`optuna.trial.Trial` and anything else with ``set_user_attr``.

    Raises:
        ValueError: A value is NaN, infinite or negative.
        TypeError: A value is not a real number.
    """
    values = {name: check_metric(name, value) for name, value in metrics.items()}
    for name, value in values.items():
        trial.set_user_attr(f"{USER_ATTR_PREFIX}{name}", value)


def measure_and_record(
    trial: Any,
    model: torch.nn.Module,
    example_input: ExampleInput,
    *,
    metrics: Sequence[str] = METRIC_NAMES,
    options: MeasureOptions | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """Measure a trial's model and record the metrics on the trial; returns the metrics.

    Call this from an objective right after building the model, with the options of the
    pretraining table if there is one (see :func:`measure`). A model that fails to run raises
    :class:`ModelMeasurementError` naming the trial and its parameters.
    """
    name = f"trial {trial.number} {trial.params}"
    results = measure(
        model, example_input, metrics=metrics, options=options, name=name, **overrides
    )
    record(trial, results)
    return results


def read_recorded(user_attrs: Mapping[str, Any]) -> dict[str, float]:
    """The zero-cost metrics in a trial's ``user_attrs``, keyed by metric name.

    The inverse of :func:`record`. Values that are not finite real numbers (e.g. written by other
    code under the same prefix) are skipped rather than poisoning a surrogate's training data.
    """
    results: dict[str, float] = {}
    for key, value in user_attrs.items():
        if not key.startswith(USER_ATTR_PREFIX):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(float(value)):
            results[key[len(USER_ATTR_PREFIX) :]] = float(value)
    return results

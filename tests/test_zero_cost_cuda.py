"""zero_cost on a CUDA GPU: the paths the CPU tests cannot reach.

Params and FLOPs must not depend on the device; memory comes from the caching allocator instead
of the CPU's tensor tracking, so the two are compared; measuring must leave modes and the current
device alone. Every test skips without a GPU (CI has none). Behaviour only: no timing is
asserted, because a shared GPU's timings are not reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from pathlib import Path
import sys

import pytest
from test_zero_cost import FAST
from test_zero_cost import _conv_net
from test_zero_cost import _mlp
from test_zero_cost import _TwoInputs
import torch
from torch import nn

from optuna_deepens import zero_cost
from optuna_deepens.zero_cost import METRIC_NAMES
from optuna_deepens.zero_cost import ModelMeasurementError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zero_cost_devices  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda", 0)
MIB = 2**20
# The caching allocator rounds every allocation up to a multiple of 512 bytes (kMinBlockSize)
# and counts whole blocks. A block is cut from a cached segment at that size unless the rest
# would be too small to reuse, so a tensor takes more only by reusing a larger freed block; in
# the MLPs below equal-sized tensors reuse equal-sized blocks. So CUDA's count is the CPU's
# (storage nbytes) plus less than 512 B per tensor alive at the peak.
BLOCK = 512


def _inputs(*shapes: tuple[int, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    tensors = tuple(torch.randn(shape) for shape in shapes)
    return tensors if len(tensors) > 1 else tensors[0]


def _to_cuda(
    x: torch.Tensor | tuple[torch.Tensor, ...],
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return tuple(t.to(CUDA) for t in x) if isinstance(x, tuple) else x.to(CUDA)


# --------------------------------------------------------------------------------------------
# Params and FLOPs: the same as on the CPU.


@pytest.mark.parametrize(
    ("make", "shapes"),
    [
        (_conv_net, [(2, 3, 8, 8)]),
        (lambda: _mlp(64, 3), [(4, 32)]),
        (_TwoInputs, [(4, 5), (4, 7)]),
    ],
    ids=["conv", "mlp", "two-inputs"],
)
def test_measure_on_cuda_counts_params_and_flops_as_on_cpu(
    make: Callable[[], nn.Module], shapes: list[tuple[int, ...]]
) -> None:
    model, x = make(), _inputs(*shapes)
    on_cpu = zero_cost.measure(model, x, metrics=["params", "flops"])
    # batch_size exercises _expand_batch on the GPU as well.
    on_cuda = zero_cost.measure(model.to(CUDA), _to_cuda(x), batch_size=16, **FAST)
    assert tuple(on_cuda) == METRIC_NAMES
    assert on_cuda["params"] == on_cpu["params"] and on_cuda["flops"] == on_cpu["flops"]
    for value in on_cuda.values():
        assert type(value) is float and math.isfinite(value) and value > 0.0


def _one_reference_per_space() -> list[zero_cost_devices.Architecture]:
    first: dict[str, zero_cost_devices.Architecture] = {}
    for arch in zero_cost_devices.architectures(resolution=64):
        first.setdefault(arch.space, arch)
    return list(first.values())


@pytest.mark.parametrize("arch", _one_reference_per_space(), ids=lambda arch: arch.space)
def test_reference_architectures_agree_with_cpu(arch: zero_cost_devices.Architecture) -> None:
    model = arch.build()
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    metrics = ["params", "flops", "memory_mb"]
    on_cpu = zero_cost.measure(model, x, metrics=metrics, name=arch.label)
    on_cuda = zero_cost.measure(model.to(CUDA), x.to(CUDA), metrics=metrics, name=arch.label)
    assert on_cuda["params"] == on_cpu["params"]
    assert on_cuda["flops"] == on_cpu["flops"]
    # Every tensor the CPU count sees is allocated on the GPU too, rounded up, and cuDNN adds
    # workspaces; no upper bound, since the workspace depends on the algorithm cuDNN picks.
    assert on_cuda["memory_mb"] >= on_cpu["memory_mb"]


# --------------------------------------------------------------------------------------------
# Memory: the caching allocator's count against the CPU's.


def test_memory_is_the_cpu_count_rounded_to_allocator_blocks() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(3, 16)
    state = (16 * 32 + 32 + 32 * 8 + 8) * 4  # 3232 bytes, counted from nbytes on both devices
    # Outputs of 384, 384 and 96 bytes. CPU: the first two are alive together, 768 B. CUDA:
    # each takes a 512 B block, and the last Linear's 512 B comes once the first is freed: 1024 B.
    assert zero_cost.measure_peak_memory_mb(model, x) * MIB == state + 768
    assert zero_cost.measure_peak_memory_mb(model.to(CUDA), x.to(CUDA)) * MIB == state + 1024


@pytest.mark.parametrize(("width", "batch"), [(20, 3), (1000, 3), (1000, 300)])
def test_memory_within_allocator_rounding_of_cpu_count(width: int, batch: int) -> None:
    depth = 3
    model, x = _mlp(width, depth), torch.randn(batch, 32)
    on_cpu = zero_cost.measure_peak_memory_mb(model, x) * MIB
    on_cuda = zero_cost.measure_peak_memory_mb(model.to(CUDA), x.to(CUDA)) * MIB
    # At most every output (a Linear and a ReLU per layer) is alive at the peak, each rounded up
    # by less than a block; matmuls need no workspace beyond cuBLAS's persistent one.
    assert on_cpu <= on_cuda < on_cpu + BLOCK * 2 * depth


def test_memory_on_cuda_grows_with_depth_width_and_batch() -> None:
    x = torch.randn(8, 32, device=CUDA)

    def memory(width: int, depth: int, batch_size: int | None = None) -> float:
        model = _mlp(width, depth).to(CUDA)
        return zero_cost.measure(model, x, metrics=["memory_mb"], batch_size=batch_size)[
            "memory_mb"
        ]

    base = memory(64, 2)
    param_mb = sum(p.numel() * 4 for p in _mlp(64, 2).parameters()) / MIB
    assert base > param_mb > 0.0
    assert memory(64, 8) > base
    assert memory(512, 2) > base
    assert memory(64, 2, batch_size=512) > base


@pytest.mark.parametrize(
    ("make", "shape"),
    [(lambda: _mlp(64, 2), (8, 32)), (_conv_net, (8, 3, 8, 8))],
    ids=["mlp", "conv"],
)
def test_memory_same_on_first_call(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    """A fresh stream's first matmul allocates cuBLAS's workspace, which is not the model's."""
    model, x = make().to(CUDA), torch.randn(shape, device=CUDA)
    stream = torch.cuda.Stream(CUDA)  # Workspaces are per stream: this one has none yet.
    stream.wait_stream(torch.cuda.current_stream(CUDA))
    with torch.cuda.stream(stream):
        first = zero_cost.measure_peak_memory_mb(model, x)
        second = zero_cost.measure_peak_memory_mb(model, x)
    assert first == second


# --------------------------------------------------------------------------------------------
# Latency, modes, devices.


def test_latency_on_cuda_is_finite_and_positive() -> None:
    model, x = _conv_net().to(CUDA), torch.randn(64, 3, 8, 8, device=CUDA)
    latency = zero_cost.measure_latency_ms(model, x, **FAST)
    assert math.isfinite(latency) and latency > 0.0


def test_measure_restores_modes_and_current_device() -> None:
    # On a machine with several GPUs, measure on the last one while the first is current.
    target = torch.device("cuda", torch.cuda.device_count() - 1)
    model = _conv_net().to(target).train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    with torch.cuda.device(0):
        zero_cost.measure(model, torch.randn(2, 3, 8, 8, device=target), **FAST)
        assert torch.cuda.current_device() == 0
    assert model.training and model[0].training and model[4].training
    assert not model[1].training
    assert torch.equal(model[1].running_mean, torch.zeros(8, device=target))


def test_cuda_input_for_cpu_model_is_a_measurement_error() -> None:
    model, x = _conv_net().train(), torch.randn(2, 3, 8, 8, device=CUDA)
    # zero_cost does not move models: PyTorch's device check fails in the first metric that
    # runs the model, and measure() names the metric and the architecture.
    with pytest.raises(ModelMeasurementError, match="'flops' of architecture cpu model") as info:
        zero_cost.measure(model, x, name="cpu model", **FAST)
    assert "cuda" in str(info.value).lower()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert model.training
    # Memory alone takes the CUDA branch (the input's device) and fails in the same way.
    with pytest.raises(ModelMeasurementError, match="'memory_mb'"):
        zero_cost.measure(model, x, metrics=["memory_mb"])
    # Counting parameters runs nothing, so it cannot notice.
    assert zero_cost.measure(model, x, metrics=["params"]) == {"params": 3130.0}


def test_cpu_input_for_cuda_model_is_a_measurement_error() -> None:
    model = _conv_net().to(CUDA)
    with pytest.raises(ModelMeasurementError, match="'flops'") as info:
        zero_cost.measure(model, torch.randn(2, 3, 8, 8), **FAST)
    assert "cuda" in str(info.value).lower()

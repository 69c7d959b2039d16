from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from optuna_deepens import zero_cost
from optuna_deepens.zero_cost import METRIC_NAMES
from optuna_deepens.zero_cost import ModelMeasurementError

# Short timing keeps the file fast; the defaults are meant for real studies.
FAST = {"warmup": 1, "min_run_time": 0.01}


def _conv_net() -> nn.Module:
    # Input (N, 3, 8, 8) -> conv 3x3 -> (N, 8, 6, 6) -> flatten 288 -> 10 logits.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )


def _mlp(width: int, depth: int, d_in: int = 32) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


class _Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom: shapes do not match")


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 3)
        self.b = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(y)


# --------------------------------------------------------------------------------------------
# Parameters and FLOPs: exact, hand-computed.


def test_count_parameters_exact() -> None:
    model = _conv_net()
    # Conv2d(3, 8, 3): 8*3*3*3 weights + 8 biases = 224
    # BatchNorm2d(8):  8 weights + 8 biases = 16 (running stats are buffers, not parameters)
    # Linear(288, 10): 288*10 weights + 10 biases = 2890
    assert zero_cost.count_parameters(model) == 224.0 + 16.0 + 2890.0


def test_count_parameters_skips_frozen_and_counts_shared_once() -> None:
    model = _conv_net()
    for p in model[0].parameters():
        p.requires_grad_(False)
    assert zero_cost.count_parameters(model) == 16.0 + 2890.0

    shared = nn.Linear(4, 4)  # 4*4 + 4 = 20
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    assert zero_cost.count_parameters(tied) == 20.0


def test_count_flops_exact() -> None:
    batch = 2
    x = torch.randn(batch, 3, 8, 8)
    # Conv2d: 2 * Cin * Cout * k * k * Hout * Wout * batch = 2 * 3 * 8 * 3 * 3 * 6 * 6 * 2 = 31104
    conv = 2 * 3 * 8 * 3 * 3 * 6 * 6 * batch
    # Linear: 2 * in * out * batch = 2 * 288 * 10 * 2 = 11520 (BatchNorm, ReLU, biases: 0)
    linear = 2 * 288 * 10 * batch
    assert zero_cost.count_flops(_conv_net(), x) == float(conv + linear) == 42624.0


def test_count_flops_accepts_tuple_of_inputs() -> None:
    x, y = torch.randn(4, 5), torch.randn(4, 7)
    # 2 * 5 * 3 * 4 + 2 * 7 * 3 * 4 = 120 + 168
    assert zero_cost.count_flops(_TwoInputs(), (x, y)) == 288.0


# --------------------------------------------------------------------------------------------
# Latency and memory.


def test_latency_positive_and_grows_with_model_size() -> None:
    x = torch.randn(8, 32)
    small, large = _mlp(64, 3), _mlp(1024, 3)
    # 3 layers of 1024 have ~250x the FLOPs of 3 layers of 64: robust on a noisy machine.
    assert zero_cost.count_flops(large, x) > 100 * zero_cost.count_flops(small, x)
    t_small = zero_cost.measure_latency_ms(small, x, **FAST)
    t_large = zero_cost.measure_latency_ms(large, x, **FAST)
    assert 0.0 < t_small < t_large
    assert math.isfinite(t_large)


def test_latency_restores_thread_count_and_validates_options() -> None:
    model, x = _mlp(16, 1), torch.randn(2, 32)
    zero_cost.measure_latency_ms(model, x, n_threads=2, **FAST)
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="n_threads"):
        zero_cost.measure_latency_ms(model, x, n_threads=0)
    with pytest.raises(ValueError, match="min_run_time"):
        zero_cost.measure_latency_ms(model, x, min_run_time=0.0)


def test_peak_memory_exact_for_small_mlp() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(4, 16)
    # State: (16*32 + 32 + 32*8 + 8) float32 = 808 * 4 = 3232 bytes.
    # Activations: Linear out (4*32*4 = 512 B) and ReLU out (512 B) are alive together, then the
    # first is freed before the last Linear (4*8*4 = 128 B): peak 1024 B. The input is excluded.
    expected = (3232 + 1024) / 2**20
    assert zero_cost.measure_peak_memory_mb(model, x) == pytest.approx(expected, rel=1e-12)


def test_peak_memory_properties() -> None:
    model = _conv_net()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    small = zero_cost.measure_peak_memory_mb(model, torch.randn(1, 3, 8, 8))
    big = zero_cost.measure_peak_memory_mb(model, torch.randn(64, 3, 8, 8))
    assert small >= param_bytes / 2**20 > 0.0
    assert big > small
    # Deterministic on CPU.
    assert zero_cost.measure_peak_memory_mb(model, torch.randn(64, 3, 8, 8)) == big


def test_peak_memory_counts_in_place_and_views_once() -> None:
    x = torch.randn(4, 16)
    plain = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
    in_place = nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=True), nn.Flatten())
    in_place.load_state_dict(plain.state_dict())
    state = (16 * 32 + 32) * 4
    # Out-of-place ReLU needs a second 512 B buffer; in-place ReLU and the Flatten view do not.
    assert zero_cost.measure_peak_memory_mb(plain, x) * 2**20 == state + 2 * 512
    assert zero_cost.measure_peak_memory_mb(in_place, x) * 2**20 == state + 512


# --------------------------------------------------------------------------------------------
# measure().


def test_measure_returns_requested_metrics_as_floats() -> None:
    model, x = _conv_net(), torch.randn(1, 3, 8, 8)
    everything = zero_cost.measure(model, x, **FAST)
    assert tuple(everything) == METRIC_NAMES
    for value in everything.values():
        assert type(value) is float
        assert math.isfinite(value) and value >= 0.0
    assert everything["params"] == 3130.0

    only = zero_cost.measure(model, x, metrics=["flops", "params"])
    assert set(only) == {"flops", "params"}
    assert only["flops"] == everything["flops"]


def test_measure_batch_size_affects_only_latency_and_memory() -> None:
    model, x = _conv_net(), torch.randn(1, 3, 8, 8)
    single = zero_cost.measure(model, x, metrics=["flops", "memory_mb"])
    batched = zero_cost.measure(model, x, metrics=["flops", "memory_mb"], batch_size=64)
    assert batched["flops"] == single["flops"]
    assert batched["memory_mb"] == zero_cost.measure_peak_memory_mb(model, x.repeat(64, 1, 1, 1))
    assert batched["memory_mb"] > single["memory_mb"]


def test_measure_rejects_unknown_metric() -> None:
    with pytest.raises(ValueError, match="latency_ms") as info:
        zero_cost.measure(_conv_net(), torch.randn(1, 3, 8, 8), metrics=["params", "synflow"])
    assert "synflow" in str(info.value)


def test_measure_wraps_model_errors_with_architecture_name() -> None:
    model = _Broken().train()
    with pytest.raises(ModelMeasurementError) as info:
        zero_cost.measure(model, torch.randn(2, 4), name="{'depth': 7}", **FAST)
    message = str(info.value)
    assert "{'depth': 7}" in message and "boom: shapes do not match" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert model.training


def test_measure_restores_training_mode_of_every_submodule() -> None:
    model = _conv_net().train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    zero_cost.measure(model, torch.randn(2, 3, 8, 8), **FAST)
    assert model.training and model[0].training and model[4].training
    assert not model[1].training
    # Measuring in eval mode does not update BatchNorm's running statistics.
    assert torch.equal(model[1].running_mean, torch.zeros(8))


def test_build_and_measure() -> None:
    x = torch.randn(1, 3, 8, 8)
    model, metrics = zero_cost.build_and_measure(_conv_net, x, name="ok", metrics=["params"])
    assert isinstance(model, nn.Sequential) and metrics == {"params": 3130.0}

    def build() -> nn.Module:
        raise ValueError("kernel 9 larger than input 8")

    with pytest.raises(ModelMeasurementError, match="suggest function") as info:
        zero_cost.build_and_measure(build, x, name="arch k=9")
    assert "arch k=9" in str(info.value) and "kernel 9" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_measure_options_are_checked_once_and_given_either_way() -> None:
    options = zero_cost.MeasureOptions(warmup=1, min_run_time=0.01)
    assert zero_cost.MeasureOptions.resolve(options) is options
    assert zero_cost.MeasureOptions.resolve(None, **FAST) == options
    assert zero_cost.MeasureOptions.resolve(FAST) == options
    assert zero_cost.MeasureOptions.resolve(options, n_threads=2).n_threads == 2
    assert options.non_defaults() == {"min_run_time": 0.01, "warmup": 1}
    assert zero_cost.MeasureOptions().non_defaults() == {}
    for bad, message in [
        ({"n_threads": 0}, r"MeasureOptions\(n_threads=0\): n_threads must be at least 1"),
        ({"batch_size": 0}, r"batch_size must be at least 1 \(or None"),
        ({"warmup": -1}, "warmup must be at least 0"),
        ({"min_run_time": 0.0}, "min_run_time must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            zero_cost.MeasureOptions(**bad)
    with pytest.raises(TypeError, match="MeasureOptions"):
        zero_cost.MeasureOptions(0.01)  # type: ignore[misc]  # keyword-only
    with pytest.raises(TypeError, match=r"Unknown measure options \['min_runtime'\]"):
        zero_cost.measure(_conv_net(), torch.randn(1, 3, 8, 8), min_runtime=0.01)
    x = torch.randn(1, 3, 8, 8)
    # An invalid option is the caller's error, raised before building (not a measurement error).
    with pytest.raises(ValueError, match="n_threads"):
        zero_cost.build_and_measure(_conv_net, x, name="ok", n_threads=0)
    by_keyword = zero_cost.measure(_conv_net(), x, metrics=["memory_mb"], batch_size=4)
    given = zero_cost.MeasureOptions(batch_size=4)
    assert by_keyword == zero_cost.measure(_conv_net(), x, metrics=["memory_mb"], options=given)


# --------------------------------------------------------------------------------------------
# Trial user attributes.


def test_record_and_read_recorded_round_trip_through_study() -> None:
    study = optuna.create_study()
    trial = study.ask()
    metrics = {"params": 3130.0, "flops": 42624.0, "latency_ms": 0.25, "memory_mb": 0.5}
    zero_cost.record(trial, metrics)
    trial.set_user_attr("note", "not a metric")
    study.tell(trial, 1.0)

    frozen = study.trials[0]
    assert frozen.user_attrs["zc_flops"] == 42624.0
    assert zero_cost.read_recorded(frozen.user_attrs) == metrics


def test_record_rejects_invalid_values_without_writing() -> None:
    trial = optuna.create_study().ask()
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="latency_ms"):
            zero_cost.record(trial, {"params": 1.0, "latency_ms": bad})
    assert trial.user_attrs == {}


def test_read_recorded_skips_foreign_and_invalid_values() -> None:
    attrs = {"zc_params": 10, "zc_flops": float("nan"), "zc_memory_mb": "big", "other": 3.0}
    assert zero_cost.read_recorded(attrs) == {"params": 10.0}


def test_measure_and_record_in_objective() -> None:
    x = torch.randn(1, 32)

    def objective(trial: optuna.Trial) -> float:
        model = _mlp(trial.suggest_int("width", 4, 16), depth=2)
        return zero_cost.measure_and_record(trial, model, x, **FAST)["flops"]

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert {f"zc_{name}" for name in METRIC_NAMES} <= set(trial.user_attrs)
        width = trial.params["width"]
        assert trial.user_attrs["zc_params"] == (32 * width + width) + (width * width + width)
        assert zero_cost.read_recorded(trial.user_attrs)["flops"] == trial.value


def test_measure_and_record_names_the_trial_on_failure() -> None:
    trial = optuna.create_study().ask({"depth": optuna.distributions.IntDistribution(1, 9)})
    with pytest.raises(ModelMeasurementError, match=r"trial 0 \{'depth': \d\}"):
        zero_cost.measure_and_record(trial, _Broken(), torch.randn(1, 4), **FAST)

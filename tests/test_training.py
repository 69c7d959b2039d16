"""The training loop: it learns, it resumes exactly from a checkpoint, it refuses bad options."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from optuna_deepens import data
from optuna_deepens.training import NonFiniteLossError
from optuna_deepens.training import TrainingConfig
from optuna_deepens.training import TrainingRun
from optuna_deepens.training import measure_throughput


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def digits() -> data.ImageData:
    pytest.importorskip("sklearn")
    return data.digits(image_size=16)


CONFIG = TrainingConfig(epochs=3, batch_size=32, learning_rate=5e-3, device="cpu")


def test_a_small_network_learns_the_digits(digits: data.ImageData) -> None:
    run = TrainingRun(small_cnn(), digits, CONFIG)
    losses = [run.train_epoch() for _ in range(3)]
    accuracy = run.evaluate()
    assert losses[-1] < losses[0]
    assert accuracy > 0.5  # Chance is 0.1; 0.73-0.82 over seeds 0-19 (model and loop).
    assert run.epoch == 3


def test_a_run_resumed_from_its_checkpoint_continues_exactly(digits: data.ImageData) -> None:
    straight = TrainingRun(small_cnn(), digits, CONFIG, seed=1)
    expected = [straight.run_epoch() for _ in range(3)]

    first = TrainingRun(small_cnn(), digits, CONFIG, seed=1)
    first.run_epoch()
    first.run_epoch()
    buffer = io.BytesIO()
    torch.save(first.state(), buffer)
    buffer.seek(0)
    resumed = TrainingRun(small_cnn(seed=7), digits, CONFIG, seed=99)  # Other init and seed.
    resumed.load_state(torch.load(buffer, weights_only=True))
    assert resumed.epoch == 2 and resumed.history == expected[:2]
    resumed.run_epoch()
    assert resumed.history == pytest.approx(expected, abs=1e-6)

    other_length = TrainingRun(small_cnn(), digits, CONFIG, epochs=5)
    with pytest.raises(ValueError, match="3-epoch run"):
        other_length.load_state(first.state())


def test_a_diverging_loss_stops_the_run(digits: data.ImageData) -> None:
    class Explodes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1)) * float("inf")

    run = TrainingRun(Explodes(), digits, CONFIG)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        run.train_epoch()


def test_throughput_is_measured(digits: data.ImageData) -> None:
    run = TrainingRun(small_cnn(), digits, CONFIG)
    assert measure_throughput(run, steps=3, warmup=1) > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be at least 1"),
        ({"batch_size": 1.5}, TypeError, "batch_size=1.5"),
        ({"learning_rate": 0}, ValueError, "learning_rate must be positive"),
        ({"label_smoothing": 1.0}, ValueError, "below 1"),
        ({"optimizer": "adam"}, ValueError, "choose one of"),
        ({"device": "tpu"}, ValueError, "device='tpu'"),
        ({"compile": "bogus"}, ValueError, "torch.compile's modes"),
        ({"optimizer": "sgd", "momentum": 0.0}, ValueError, "needs momentum > 0"),
        ({"bf16": "yes"}, TypeError, "bf16='yes'"),
        ({"augment": "no"}, TypeError, "augment='no'"),
        ({"channels_last": 1}, TypeError, "channels_last=1"),
    ],
)
def test_bad_training_options_are_refused(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        TrainingConfig(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_asking_for_cuda_without_one_names_the_fix() -> None:
    with pytest.raises(ValueError, match="device='auto' or 'cpu'"):
        TrainingConfig(device="cuda")

"""The trainer and the training objective on a CUDA GPU (skipped without one).

Run on an H200 with ``benchmarks/gpu_check.sh``; the CPU paths are tested everywhere.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
import pytest
import torch
from torch import nn
from train_worker import TinySpace

from optuna_deepens import data
from optuna_deepens.coordination import FAIL_REASON_ATTR
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from optuna_deepens.training import TrainingRun
from search_spaces import nasbench201

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def config(**changes) -> TrainingConfig:
    options = {"epochs": 3, "batch_size": 32, "learning_rate": 5e-3, "device": "cuda"}
    return TrainingConfig(**{**options, **changes})


@pytest.fixture(scope="module")
def digits() -> data.ImageData:
    pytest.importorskip("sklearn")
    return data.digits(image_size=16)


def test_cuda_defaults_bf16_channels_last_and_data_on_the_gpu(digits: data.ImageData) -> None:
    run = TrainingRun(
        TinySpace.build({"width": 16, "kernel": 3}, num_classes=10), digits, config()
    )
    assert run.bf16 and run.channels_last
    assert run.data.x_train.is_cuda  # A small data set is kept in GPU memory.
    x, _ = next(iter(run.train_batches))
    assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        run.run_epoch()
    assert run.history[-1] > 0.3  # Chance is 0.1.


def test_real_out_of_memory_fails_the_trial_and_frees_the_memory(digits: data.ImageData) -> None:
    class Greedy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:  # 4 TB: more than any GPU has.
                torch.empty(4 * 2**40, dtype=torch.uint8, device=x.device)
            return self.linear(x.flatten(1))

    class Space:
        suggest = staticmethod(lambda trial: trial.suggest_categorical("kind", ["greedy", "ok"]))
        build = staticmethod(
            lambda kind, *, num_classes: (
                Greedy()
                if kind == "greedy"
                else TinySpace.build({"width": 8, "kernel": 3}, num_classes=num_classes)
            )
        )

    objective = TrainingObjective(Space, digits, config=config(), zero_cost_metrics=False)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"kind": "greedy"})
    study.enqueue_trial({"kind": "ok"})
    before = torch.cuda.memory_allocated()
    study.optimize(objective, n_trials=2)
    greedy, ok = study.trials
    assert greedy.state == TrialState.FAIL
    assert greedy.user_attrs[FAIL_REASON_ATTR].startswith("CUDA out of memory")
    assert ok.state == TrialState.COMPLETE
    assert torch.cuda.memory_allocated() <= before + 2**20  # Nothing of the trials is left.


def test_a_thesis_space_trains_in_a_study_on_the_gpu(digits: data.ImageData) -> None:
    objective = TrainingObjective(
        nasbench201,
        digits,
        config=config(epochs=2, batch_size=128),
        build_options={"channels": 16, "cells_per_stage": 2},
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    assert all(t.user_attrs["zc_flops"] > 0 for t in study.trials)

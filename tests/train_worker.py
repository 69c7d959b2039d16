"""A training study run as its own process by tests/test_objective.py.

Usage: python train_worker.py STORAGE CHECKPOINT_DIR N_TRIALS [--hang-at-epoch K]

Trains ``tiny_space`` networks on 16-pixel digits for 4 epochs with a per-epoch checkpoint, on
an RDB storage with a 1 s heartbeat and Optuna's ``RetryFailedTrialCallback``. With
``--hang-at-epoch K`` the process stops before epoch K (after checkpointing K - 1) and waits
to be killed. It prints how many epochs it trained.
"""

from __future__ import annotations

import argparse
import time

import optuna
from optuna.storages import RetryFailedTrialCallback
import torch
from torch import nn

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import data
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from optuna_deepens.training import TrainingRun


class TinySpace:
    """Two choices of a small conv-net: enough for a real, quick training."""

    @staticmethod
    def suggest(trial: optuna.Trial) -> dict:
        return {
            "width": trial.suggest_categorical("width", [8, 16]),
            "kernel": trial.suggest_categorical("kernel", [3, 5]),
        }

    @staticmethod
    def build(config: dict, *, num_classes: int) -> nn.Module:
        width, kernel = config["width"], config["kernel"]
        return nn.Sequential(
            nn.Conv2d(3, width, kernel, padding=kernel // 2),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(width * 16, num_classes),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("checkpoint_dir")
    parser.add_argument("n_trials", type=int)
    parser.add_argument("--hang-at-epoch", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)

    trained = 0
    run_epoch = TrainingRun.run_epoch

    def counting_epoch(self: TrainingRun) -> float:
        nonlocal trained
        if self.epoch + 1 == args.hang_at_epoch:
            print("hanging", flush=True)
            time.sleep(3600)
        trained += 1
        return run_epoch(self)

    TrainingRun.run_epoch = counting_epoch  # type: ignore[method-assign]

    storage = optuna.storages.RDBStorage(
        args.storage,
        heartbeat_interval=1,
        failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
    )
    objective = TrainingObjective(
        TinySpace,
        data.digits(image_size=16),
        config=TrainingConfig(epochs=4, batch_size=64, device="cpu"),
        checkpoint_dir=args.checkpoint_dir,
        zero_cost_metrics=False,
    )
    study = optuna.create_study(
        study_name="train",
        storage=storage,
        sampler=DeepEnsembleSampler(seed=0, search_space=objective.suggest),
        direction="maximize",
        load_if_exists=True,
    )
    study.optimize(objective, n_trials=args.n_trials)
    print(f"trained {trained} epochs", flush=True)


if __name__ == "__main__":
    main()

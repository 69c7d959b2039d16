"""Quickstart: a small neural architecture search, end to end on CPU in a few minutes.

The task is scikit-learn's bundled handwritten digits (1,797 8x8 greyscale images, no download)
with a fixed, seeded train/validation split. The search space is a small conv-net written with
plain ``trial.suggest_*`` calls, including conditional parameters: ``channels_{i}`` exists only
for the conv layers in use, and ``mlp_width`` only when the head is an MLP.

``DeepEnsembleSampler`` draws the first trials at random, then models every finished trial
and proposes an architecture. This space mixes categorical choices with numbers (widths, a
dropout), so a Gaussian process scores the candidates with log expected improvement, the
numbers of the best ones climb it, and an untried combination of choices goes first unless the
model is sure a refinement is better (``numeric_surrogate="auto"``; in a space of categorical
choices alone the deep ensemble scores, by Thompson sampling). The same
``suggest_architecture`` function is given to it as ``search_space=``: the sampler dry-runs it,
without training, to learn which parameters each candidate really uses.

Each trial trains for a few epochs with Adam (seeded by the trial number, so reruns agree),
reports the validation accuracy after every epoch, and returns the final one. Results go to a
SQLite file; running the script again resumes the study until it holds ``--trials`` COMPLETE
trials, so an interrupted run picks up where it stopped, and a larger ``--trials`` extends a
finished study. Each running trial sends a heartbeat to the storage: if the process is killed
(power cut, ``kill -9``), the trial it was training is marked FAIL once the study is resumed,
instead of showing as running for ever in the dashboard, and the same architecture is queued
again (Optuna's ``RetryFailedTrialCallback``).

Run it from the repository root (needs ``pip install optuna-deepens[examples]``)::

    python examples/quickstart.py                # 40 trials, a few minutes on 2 CPU cores
    python examples/quickstart.py --trials 60    # continue the same study to 60 trials

then inspect the study (``pip install optuna-dashboard``, or ``optuna-deepens[dashboard]``)::

    optuna-dashboard sqlite:///quickstart.db
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
import torch
from torch import nn
import torch.nn.functional as F

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.cli import open_storage

N_TRIALS = 40
EPOCHS = 15
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
SPLIT_SEED = 0
N_CLASSES = 10

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as float32 images ``[N, 1, 8, 8]`` in ``[0, 1]``, split 75/25 with a fixed seed."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # Pixel values are 0-16.
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=0.25, random_state=SPLIT_SEED, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train).long(),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val).long(),
    )


def suggest_architecture(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: every ``suggest_*`` call of the objective, and no training.

    This is passed to the sampler as ``search_space=``, so it must only read ``trial``.
    """
    n_layers = trial.suggest_int("n_layers", 1, 3)
    channels = [trial.suggest_int(f"channels_{i}", 8, 64, log=True) for i in range(n_layers)]
    config: dict[str, Any] = {
        "n_layers": n_layers,
        "channels": channels,
        "kernel_size": trial.suggest_categorical("kernel_size", [3, 5]),
        "batch_norm": trial.suggest_categorical("batch_norm", [False, True]),
        "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "head": trial.suggest_categorical("head", ["linear", "mlp"]),
    }
    if config["head"] == "mlp":
        config["mlp_width"] = trial.suggest_int("mlp_width", 16, 256, log=True)
    return config


def build_model(config: dict[str, Any]) -> nn.Module:
    """A conv-net for 8x8 inputs: conv blocks, max-pooling after the first two, then a head."""
    activation = ACTIVATIONS[config["activation"]]
    layers: list[nn.Module] = []
    in_channels, size = 1, 8
    for i, out_channels in enumerate(config["channels"]):
        kernel = config["kernel_size"]
        layers.append(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                padding=kernel // 2,
                bias=not config["batch_norm"],
            )
        )
        if config["batch_norm"]:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(activation())
        if i < 2:  # 8x8 -> 4x4 -> 2x2; a third layer keeps 2x2.
            layers.append(nn.MaxPool2d(2))
            size //= 2
        in_channels = out_channels
    layers += [nn.Flatten(), nn.Dropout(config["dropout"])]
    n_features = in_channels * size * size
    if config["head"] == "mlp":
        layers += [
            nn.Linear(n_features, config["mlp_width"]),
            activation(),
            nn.Dropout(config["dropout"]),
            nn.Linear(config["mlp_width"], N_CLASSES),
        ]
    else:
        layers.append(nn.Linear(n_features, N_CLASSES))
    return nn.Sequential(*layers)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


class Objective:
    """Builds, trains and scores one architecture; returns the validation accuracy."""

    def __init__(self) -> None:
        self.x_train, self.y_train, self.x_val, self.y_val = load_data()

    def __call__(self, trial: optuna.Trial) -> float:
        config = suggest_architecture(trial)
        torch.manual_seed(trial.number)  # Same trial number, same initialisation and batches.
        model = build_model(config)
        trial.set_user_attr("n_params", sum(p.numel() for p in model.parameters()))
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        n_train = len(self.x_train)
        val_accuracy = 0.0
        for epoch in range(EPOCHS):
            model.train()
            for batch in torch.randperm(n_train).split(BATCH_SIZE):
                optimizer.zero_grad()
                loss = F.cross_entropy(model(self.x_train[batch]), self.y_train[batch])
                loss.backward()
                optimizer.step()
            val_accuracy = accuracy(model, self.x_val, self.y_val)
            trial.report(val_accuracy, epoch)
        return val_accuracy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=N_TRIALS, help="COMPLETE trials the study should hold"
    )
    parser.add_argument("--storage", default="sqlite:///quickstart.db", help="Optuna storage URL")
    parser.add_argument("--study-name", default="quickstart", help="Optuna study name")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=5,
        help="seconds between a running trial's heartbeats; a trial silent for twice as long "
        "(its process was killed) is marked FAIL by the next run",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=args.study_name,
        storage=open_storage(args.storage, args.heartbeat),
        direction="maximize",
        sampler=DeepEnsembleSampler(seed=0, search_space=suggest_architecture),
        load_if_exists=True,
    )
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    n_remaining = max(0, args.trials - n_complete)
    if n_complete:
        print(f"Resuming study {args.study_name!r}: {n_complete} COMPLETE trial(s) found.")
    if n_remaining:
        try:
            study.optimize(Objective(), n_trials=n_remaining, show_progress_bar=True)
        except KeyboardInterrupt:
            sys.exit("\nInterrupted: run the same command again to resume the study.")

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        sys.exit("No COMPLETE trials yet: run with --trials 1 or more.")
    n_model = sum(t.user_attrs.get("deepens_source") == "model" for t in complete)
    best = study.best_trial
    print(f"\nBest validation accuracy: {best.value:.4f} (trial {best.number})")
    print("Best architecture:")
    for name, value in best.params.items():
        print(f"  {name}: {value}")
    print(f"Parameters: {best.user_attrs['n_params']:,}")
    print(f"Trials: {len(complete)} COMPLETE, {n_model} chosen by the model.")
    print("\nInspect the study (pip install optuna-dashboard, or optuna-deepens[dashboard]):")
    print(f"  optuna-dashboard {args.storage}")


if __name__ == "__main__":
    main()

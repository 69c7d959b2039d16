"""A study worker run as its own process by the storage tests.

Usage: python worker.py STORAGE N_TRIALS [--hang-at N]

STORAGE is an RDB URL or ``journal:<path>``. Every worker uses seed 0, as users who copy one
script to many machines do. ``--hang-at N`` makes trial N suggest its parameters and then block,
so that the test can kill the process with a trial left RUNNING.
"""

from __future__ import annotations

import argparse
import time

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig

CHOICES = ("a", "b", "c")
SCORES = {"a": 0.0, "b": 1.0, "c": 2.5}


def suggest(trial: optuna.Trial) -> dict:
    return {f"e{i}": trial.suggest_categorical(f"e{i}", CHOICES) for i in range(4)}


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    if spec.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(spec.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("n_trials", type=int)
    parser.add_argument("--hang-at", type=int, default=-1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    sampler = DeepEnsembleSampler(
        seed=0,
        n_startup_trials=4,
        search_space=suggest,
        ensemble_config=EnsembleConfig(cold_steps=100, warm_steps=20),
    )
    study = optuna.create_study(
        study_name="shared",
        storage=open_storage(args.storage),
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial)
        if trial.number == args.hang_at:
            print("hanging", flush=True)
            time.sleep(3600)
        time.sleep(0.05)  # Keeps several trials RUNNING at once across workers.
        return sum(SCORES[v] for v in config.values())

    study.optimize(objective, n_trials=args.n_trials)


if __name__ == "__main__":
    main()

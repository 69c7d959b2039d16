"""A study worker run as its own process by the storage and worker tests.

Usage: python worker.py STORAGE N_TRIALS [--space flat|conditional] [--no-search-space]
                        [--heartbeat SECONDS] [--hang-at NUMBER] [--hang-after K]

STORAGE is an RDB URL (SQLite or PostgreSQL) or ``journal:<path>``. The study, named
``shared`` and maximised, is loaded or created. Every worker uses seed 0, as users who copy one
script to many machines do.

* ``--space flat``: four categoricals of 3 choices (81 architectures), the default.
  ``--space conditional``: the issue's space, ``a``, ``b``, ``c`` of 4 choices each and ``d``
  (1 to 4) only when ``a`` is a0 or a1: 2 * 16 + 2 * 16 * 4 = 160 architectures.
* ``--no-search-space``: build the sampler without ``search_space=`` (the default passes the
  space's suggest function).
* ``--heartbeat N``: RDB storages only, ``heartbeat_interval=N`` and ``grace_period=2 * N``,
  so that a trial of a killed worker is failed by the next trial any worker starts.
* ``--hang-at N`` makes trial number N, ``--hang-after K`` this process's K-th trial (from 1),
  suggest its parameters, print ``hanging`` and block, so that the test can kill the process
  with a trial left RUNNING.

Each trial prints ``trial NUMBER`` once its parameters are suggested, so the test knows which
process ran which trial.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any
import warnings

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig

STUDY_NAME = "shared"

CHOICES = ("a", "b", "c")
SCORES = {"a": 0.0, "b": 1.0, "c": 2.5}


def suggest(trial: optuna.Trial) -> dict:
    """The flat space: 3 ** 4 = 81 architectures."""
    return {f"e{i}": trial.suggest_categorical(f"e{i}", CHOICES) for i in range(4)}


CONDITIONAL = {name: tuple(f"{name}{i}" for i in range(4)) for name in ("a", "b", "c")}
CONDITIONAL_SIZE = 2 * 16 + 2 * 16 * 4  # a in a2/a3: 16 each; a in a0/a1: 16 * 4 each.


def suggest_conditional(trial: optuna.Trial) -> dict:
    """The issue's space: ``d`` exists only when ``a`` is a0 or a1 (160 architectures)."""
    config: dict[str, Any] = {
        name: trial.suggest_categorical(name, choices) for name, choices in CONDITIONAL.items()
    }
    if config["a"] in ("a0", "a1"):
        config["d"] = trial.suggest_int("d", 1, 4)
    return config


def score_conditional(config: dict) -> float:
    index = {name: CONDITIONAL[name].index(config[name]) for name in CONDITIONAL}
    return index["a"] + 0.7 * index["b"] + 0.3 * index["c"] + 0.2 * config.get("d", 0)


SPACES: dict[str, tuple[Callable[[optuna.Trial], dict], Callable[[dict], float]]] = {
    "flat": (suggest, lambda config: sum(SCORES[v] for v in config.values())),
    "conditional": (suggest_conditional, score_conditional),
}


def open_storage(spec: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """``journal:<path>`` or an RDB URL; ``heartbeat`` (seconds) applies to RDB storages only."""
    if spec.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(spec.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    if spec.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {}
    if heartbeat is None:
        return optuna.storages.RDBStorage(spec, engine_kwargs=engine_kwargs)
    return optuna.storages.RDBStorage(
        spec,
        heartbeat_interval=heartbeat,
        grace_period=2 * heartbeat,
        engine_kwargs=engine_kwargs,
    )


def load_study(spec: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(spec))


def create_study(spec: str) -> optuna.Study:
    return optuna.create_study(
        study_name=STUDY_NAME, storage=open_storage(spec), direction="maximize"
    )


def params_key(trial: optuna.trial.FrozenTrial) -> tuple:
    """What makes two trials the same architecture."""
    return tuple(sorted(trial.params.items()))


# The tests' subprocesses run on one thread each: the machine may be running other suites.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_python(*argv: str, cwd: Path | None = None) -> str:
    """Run ``python ARGV...`` (a script or ``-m module``); it must succeed. Its stdout."""
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def spawn(spec: str, n_trials: int, *options: str, **popen: Any) -> subprocess.Popen:
    """This script as a new process; its output is piped as text unless ``popen`` says else."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    argv = [sys.executable, str(Path(__file__).resolve()), spec, str(n_trials), *options]
    return subprocess.Popen(argv, **popen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("n_trials", type=int)
    parser.add_argument("--space", choices=sorted(SPACES), default="flat")
    parser.add_argument("--no-search-space", action="store_true")
    parser.add_argument("--heartbeat", type=int, default=None)
    parser.add_argument("--hang-at", type=int, default=-1, help="trial number that hangs")
    parser.add_argument("--hang-after", type=int, default=-1, help="this process's K-th trial")
    parser.add_argument("--seed", type=int, default=0, help="every worker's sampler seed")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats are experimental in Optuna; the warning would fill the test logs.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    space, score = SPACES[args.space]
    search_space = None if args.no_search_space else space
    if args.space == "flat":
        sampler = DeepEnsembleSampler(
            seed=0,
            n_startup_trials=4,
            search_space=search_space,
            ensemble_config=EnsembleConfig(cold_steps=100, warm_steps=20),
        )
    else:
        sampler = DeepEnsembleSampler(
            seed=args.seed,
            n_startup_trials=4,
            n_candidates=256,
            search_space=search_space,
            ensemble_config=EnsembleConfig(cold_steps=60, warm_steps=10),
        )
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=open_storage(args.storage, args.heartbeat),
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )
    started = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal started
        started += 1
        config = space(trial)
        print(f"trial {trial.number}", flush=True)
        if trial.number == args.hang_at or started == args.hang_after:
            print("hanging", flush=True)
            time.sleep(3600)
        time.sleep(0.05)  # Keeps several trials RUNNING at once across workers.
        return score(config)

    study.optimize(objective, n_trials=args.n_trials)


if __name__ == "__main__":
    main()

"""A seeded, NAS-like synthetic objective with categorical and conditional variables.

Six cell edges pick one of five operations (per-edge scores plus interactions between
neighbouring edges, like a NAS-Bench-201 cell), and a block type opens one of two branches whose
parameters only exist on that branch. The optimum needs the ``attn`` branch with 4 heads.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import optuna

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_EDGES = 6
_rng = np.random.default_rng(20261128)
EDGE_SCORES = _rng.normal(0.0, 1.0, size=(N_EDGES, len(OPS)))
PAIR_SCORES = _rng.normal(0.0, 0.7, size=(N_EDGES - 1, len(OPS), len(OPS)))
KERNEL_BONUS = {3: 0.3, 5: 1.0, 7: 0.2}
HEADS_BONUS = {1: 0.0, 2: 0.8, 4: 2.0, 8: 1.2}


def suggest(trial: optuna.Trial) -> dict:
    config = {f"edge{i}": trial.suggest_categorical(f"edge{i}", OPS) for i in range(N_EDGES)}
    config["block"] = trial.suggest_categorical("block", ["conv", "attn"])
    if config["block"] == "conv":
        config["kernel"] = trial.suggest_int("kernel", 3, 7, step=2)
    else:
        config["heads"] = trial.suggest_categorical("heads", [1, 2, 4, 8])
        config["attn_dim"] = trial.suggest_int("attn_dim", 16, 256, log=True)
    return config


def cell_score(ops: tuple[int, ...]) -> float:
    value = sum(EDGE_SCORES[i, o] for i, o in enumerate(ops))
    value += sum(PAIR_SCORES[i, ops[i], ops[i + 1]] for i in range(N_EDGES - 1))
    return float(value)


def evaluate(config: dict) -> float:
    ops = tuple(OPS.index(config[f"edge{i}"]) for i in range(N_EDGES))
    value = cell_score(ops)
    if config["block"] == "conv":
        value += KERNEL_BONUS[config["kernel"]]
    else:
        value += HEADS_BONUS[config["heads"]] - 0.5 * math.log2(config["attn_dim"] / 64) ** 2
    return value


def objective(trial: optuna.Trial) -> float:
    return evaluate(suggest(trial))


def optimum() -> float:
    best_cell = max(cell_score(ops) for ops in itertools.product(range(len(OPS)), repeat=N_EDGES))
    return best_cell + max(max(KERNEL_BONUS.values()), max(HEADS_BONUS.values()))

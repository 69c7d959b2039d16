"""A seeded synthetic of chapter 8's latency-matched search, for the budget helper.

A design is four cell edges, each one of five operations (per-edge scores plus interactions
between neighbours, like :mod:`synthetic`). Each operation costs latency; at a latency budget
the design's width is matched to it (``width = budget / cost``), as
``search_spaces.attention.match_width`` does, and width adds accuracy with diminishing returns.
So a cheap design gets wide at a small budget and the best design changes with the budget: the
Pareto set of designs over budgets is not one design.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import optuna

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_COST = (0.0, 0.05, 0.5, 1.5, 0.25)
N_EDGES = 4
BUDGETS = (1.0, 4.0, 8.0)
WIDTH_GAIN = 8.0
_rng = np.random.default_rng(20261130)
EDGE_SCORES = _rng.normal(0.0, 0.5, size=(N_EDGES, len(OPS))) + 0.5 * np.array(OP_COST)
PAIR_SCORES = _rng.normal(0.0, 0.25, size=(N_EDGES - 1, len(OPS), len(OPS)))


def suggest(trial: optuna.Trial) -> tuple[int, ...]:
    return tuple(OPS.index(trial.suggest_categorical(f"edge{i}", OPS)) for i in range(N_EDGES))


def accuracy(ops: tuple[int, ...], budget: float) -> float:
    quality = sum(EDGE_SCORES[i, o] for i, o in enumerate(ops))
    quality += sum(PAIR_SCORES[i, ops[i], ops[i + 1]] for i in range(N_EDGES - 1))
    width = budget / cost(ops)
    return float(quality + WIDTH_GAIN * (1.0 - math.exp(-width)))


def cost(ops: tuple[int, ...]) -> float:
    """Latency of the design at width 1."""
    return 0.5 + sum(OP_COST[o] for o in ops)


def objective(trial: optuna.Trial, budget: float) -> float:
    return accuracy(suggest(trial), budget)


@functools.cache
def optimum(budget: float) -> tuple[float, tuple[int, ...]]:
    """The best accuracy at ``budget`` and its design."""
    designs = itertools.product(range(len(OPS)), repeat=N_EDGES)
    return max((accuracy(ops, budget), ops) for ops in designs)

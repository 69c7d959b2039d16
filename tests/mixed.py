"""A seeded conditional space whose categorical part has no additive structure to exploit.

``branch`` picks one of three blocks, each opening its own categorical parameters; ``width``
(log scale, 8-512) and ``depth`` (1-8) are shared by all branches. It reproduces the regime of
issue 18, where the default sampler ended worse than random search by refining the width of
the few combinations it had found instead of trying others:

* ``cell`` (3 x 3 x 2 x 4 = 72 combinations) holds the optimum. Its table is interactions
  (main effects removed) plus small main effects that all point at a *decoy*: the additive
  fit's argmax, a strict local optimum (0.15+ above each one-edit neighbour) at 1.8, while
  the optimum (3.0), a second-best two edits from it (2.85) and 12 more combinations
  (2.2-2.7) sit at random places, at least two edits from the decoy and from each other. An
  additive fit explains ~10% of the table's variance, and it points the wrong way.
* ``conv`` (2 x 5 x 5 = 50) and ``attn`` (3 x 5 x 4 = 60) are mostly additive (main effects
  sd 0.35, interactions sd 0.15), lower on average (best 1.6 and 1.5), so the right branch is
  found quickly.
* ``width`` is log-quadratic around an optimum that moves with the combination (64 * 2**u,
  |u| <= 0.8): a factor 2 off costs 0.25, so refining the width of a known combination keeps
  paying a little. ``depth`` is quadratic (0.05 per squared step) around a per-branch optimum.

Values are O(1) as in the issue: the cell table spans about -0.3 to 3 and the numeric terms
cost up to ~3.5. Sitting at the decoy is a regret of 1.2 or more; random search's median at
60 trials is ~0.8. Maximise; regret is :func:`optimum` minus the best value.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import optuna

BRANCHES = ("cell", "conv", "attn")
# Each branch's categorical parameters, in suggest order.
SPACES: dict[str, dict[str, tuple]] = {
    "cell": {
        "cell_op": ("conv3x3", "conv5x5", "dwconv"),
        "cell_norm": ("batch", "layer", "none"),
        "cell_skip": ("residual", "dense"),
        "cell_act": ("relu", "gelu", "swish", "tanh"),
    },
    "conv": {
        "conv_type": ("plain", "separable"),
        "conv_kernel": (1, 3, 5, 7, 9),
        "conv_expand": (1, 2, 3, 4, 6),
    },
    "attn": {
        "attn_kind": ("softmax", "linear", "local"),
        "attn_heads": (1, 2, 4, 8, 16),
        "attn_pos": ("none", "absolute", "relative", "rotary"),
    },
}
WIDTH_RANGE = (8.0, 512.0)
DEPTH_RANGE = (1, 8)
WIDTH_CURVATURE = 0.25  # Per squared octave: a factor 2 off the best width costs 0.25.
WIDTH_CENTRE = 6.0  # log2 of 64, moved by up to +-WIDTH_SHIFT octaves per combination.
WIDTH_SHIFT = 0.8
DEPTH_CURVATURE = 0.05
DEPTH_OPTIMUM = {"cell": 4, "conv": 6, "attn": 3}

TOP = 3.0  # The optimum's table value (cell branch).
SECOND = 2.85  # The other near-optimal combination, two edits from the first.
PEAKS = (2.2, 2.7, 12)  # Range and count of other good combinations, at random places.
DECOY = 1.8  # The marginals' favourite: a local optimum 1.2 below the top.
CAP = 1.7  # Every other cell combination scores at most this less a jitter (up to 0.3).
ADDITIVE_MAX = {"conv": 1.6, "attn": 1.5}  # The best of the mostly additive branches.

Structure = tuple  # (branch, choice index per categorical parameter of that branch)


def _neighbours(index: tuple[int, ...], shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The combinations one edit away."""
    return [
        index[:axis] + (value,) + index[axis + 1 :]
        for axis, n in enumerate(shape)
        for value in range(n)
        if value != index[axis]
    ]


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(x != y for x, y in zip(a, b))


def _cell_table(rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple, tuple]:
    """The 3x3x2x4 table, its optimum, second-best and decoy (index tuples).

    Pure interactions (every main effect removed) plus main effects that favour the decoy's
    choices; then everything is capped below the decoy and the good combinations are placed
    where the marginals do not point: two near-optimal ones and a few more peaks, each at
    least two edits from the decoy and from each other.
    """
    shape = tuple(len(v) for v in SPACES["cell"].values())
    noise = rng.normal(0.0, 1.0, size=shape)
    for axis in range(noise.ndim):  # Remove main effects: the interactions' marginals are flat.
        others = tuple(a for a in range(noise.ndim) if a != axis)
        noise -= noise.mean(axis=others, keepdims=True) - noise.mean()
    table = 0.6 + 0.4 * noise / noise.std()
    decoy = tuple(int(rng.integers(n)) for n in shape)
    for axis, n in enumerate(shape):  # Main effects: the decoy's choices lead.
        effect = np.full(n, -0.4 / (n - 1))
        effect[decoy[axis]] = 0.4
        table += effect.reshape([n if a == axis else 1 for a in range(len(shape))])
    np.minimum(table, CAP - 0.3 * rng.random(shape), out=table)
    for neighbour in _neighbours(decoy, shape):  # A strict local optimum, by a margin.
        table[neighbour] = min(table[neighbour], DECOY - 0.15 - 0.2 * rng.random())
    # The optimum differs from the decoy in every parameter; the second-best in two of the
    # optimum's, so a search that leaves the decoy's basin can still climb to the top.
    best = tuple(int((d + 1 + rng.integers(n - 1)) % n) for d, n in zip(decoy, shape))
    second = list(best)
    for axis in (0, 3):
        step = 2 if (best[axis] + 1) % shape[axis] == decoy[axis] else 1
        second[axis] = (best[axis] + step) % shape[axis]
    second = tuple(second)
    placed = [decoy, best, second]
    low, high, count = PEAKS
    for value in np.linspace(high, low, int(count)):
        while True:
            index = tuple(int(rng.integers(n)) for n in shape)
            if all(_distance(index, other) >= 2 for other in placed):
                break
        table[index] = value
        placed.append(index)
    table[decoy], table[best], table[second] = DECOY, TOP, SECOND
    return table, best, second, decoy


def _additive_table(rng: np.random.Generator, branch: str, best: float) -> np.ndarray:
    """Mostly additive: main effects (sd 0.35) plus weak interactions (sd 0.15), max ``best``."""
    shape = tuple(len(v) for v in SPACES[branch].values())
    table = rng.normal(0.0, 0.15, size=shape)
    for axis, n in enumerate(shape):
        effect = rng.normal(0.0, 0.35, size=n)
        table += effect.reshape([n if a == axis else 1 for a in range(len(shape))])
    return table - table.max() + best


_rng = np.random.default_rng(20260518)
CELL_TABLE, BEST_CELL, SECOND_CELL, DECOY_CELL = _cell_table(_rng)
TABLES = {
    "cell": CELL_TABLE,
    "conv": _additive_table(_rng, "conv", ADDITIVE_MAX["conv"]),
    "attn": _additive_table(_rng, "attn", ADDITIVE_MAX["attn"]),
}


def _check() -> None:
    """The design's claims, so that a change of seed or constant cannot silently break them."""
    shape = CELL_TABLE.shape
    grand = CELL_TABLE.mean()
    additive = np.full(shape, grand)
    for axis in range(len(shape)):
        others = tuple(a for a in range(len(shape)) if a != axis)
        additive = additive + CELL_TABLE.mean(axis=others, keepdims=True) - grand
    assert np.unravel_index(additive.argmax(), shape) == DECOY_CELL
    assert all(CELL_TABLE[n] < DECOY - 0.1 for n in _neighbours(DECOY_CELL, shape))
    assert CELL_TABLE.argmax() == np.ravel_multi_index(BEST_CELL, shape)
    assert all(table.max() < DECOY for name, table in TABLES.items() if name != "cell")
    assert all(_distance(DECOY_CELL, cell) == 4 for cell in (BEST_CELL, SECOND_CELL))


_check()
# The best log2-width of every combination.
WIDTH_OPTIMA = {
    branch: WIDTH_CENTRE + WIDTH_SHIFT * _rng.uniform(-1.0, 1.0, size=table.shape)
    for branch, table in TABLES.items()
}


def suggest(trial: optuna.Trial) -> dict:
    branch = trial.suggest_categorical("branch", BRANCHES)
    config: dict = {"branch": branch}
    for name, choices in SPACES[branch].items():
        config[name] = trial.suggest_categorical(name, choices)
    config["width"] = trial.suggest_float("width", *WIDTH_RANGE, log=True)
    config["depth"] = trial.suggest_int("depth", *DEPTH_RANGE)
    return config


def structure(config: dict) -> Structure:
    """The categorical part of a configuration, as (branch, choice indices)."""
    branch = config["branch"]
    return (branch, tuple(choices.index(config[n]) for n, choices in SPACES[branch].items()))


def structure_score(config: dict) -> float:
    """The table value of a configuration's combination: its value at the best width/depth."""
    branch, index = structure(config)
    return float(TABLES[branch][index])


def evaluate(config: dict) -> float:
    branch, index = structure(config)
    octaves = math.log2(config["width"]) - WIDTH_OPTIMA[branch][index]
    depth_off = config["depth"] - DEPTH_OPTIMUM[branch]
    return (
        float(TABLES[branch][index])
        - WIDTH_CURVATURE * octaves**2
        - DEPTH_CURVATURE * depth_off**2
    )


def objective(trial: optuna.Trial) -> float:
    return evaluate(suggest(trial))


def params_of(branch: str, index: tuple[int, ...]) -> dict:
    """The categorical params of a combination (no width or depth)."""
    names = SPACES[branch]
    return {"branch": branch, **{n: names[n][i] for n, i in zip(names, index)}}


def decoy_params() -> dict:
    return params_of("cell", DECOY_CELL)


def optimum() -> float:
    """Exact: every combination at its best width (closed form, clipped) and depth."""
    low, high = (math.log2(w) for w in WIDTH_RANGE)
    best = -math.inf
    for branch, table in TABLES.items():
        for index in itertools.product(*(range(n) for n in table.shape)):
            octaves = WIDTH_OPTIMA[branch][index]
            width_term = WIDTH_CURVATURE * (octaves - min(max(octaves, low), high)) ** 2
            depth_term = min(
                DEPTH_CURVATURE * (d - DEPTH_OPTIMUM[branch]) ** 2
                for d in range(DEPTH_RANGE[0], DEPTH_RANGE[1] + 1)
            )
            best = max(best, float(table[index]) - width_term - depth_term)
    return best

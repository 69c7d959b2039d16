"""The conditional mixed space of issue 18 (tests/mixed.py) and its harness.

The optimum is checked against an enumeration that goes through ``suggest`` and ``evaluate``
only (not the module's tables), with the numeric part optimised numerically, so that a slip in
the closed form of :func:`mixed.optimum` cannot hide.
"""

from __future__ import annotations

from collections import Counter
import json
import math
from pathlib import Path
import sys
from typing import Any

import numpy as np
import optuna
import pytest
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mixed  # noqa: E402
import mixed_spaces  # noqa: E402


class _EnumeratingTrial:
    """Answers ``suggest_categorical`` from a list of choice indices and records the choices.

    Run ``suggest`` with it repeatedly, advancing the indices like an odometer, to visit every
    categorical structure the function can produce, conditional branches included.
    """

    def __init__(self, path: list[int]) -> None:
        self.path = path
        self.sizes: list[int] = []
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: tuple) -> Any:
        position = len(self.sizes)
        self.sizes.append(len(choices))
        index = self.path[position] if position < len(self.path) else 0
        self.params[name] = choices[index]
        return choices[index]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.params[name] = low
        return low

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.params[name] = low
        return low


def _structures() -> list[dict[str, Any]]:
    """Every categorical structure of ``mixed.suggest``, found by running it."""
    found, path = [], [0]
    while True:
        trial = _EnumeratingTrial(path)
        mixed.suggest(trial)  # type: ignore[arg-type]
        path = path + [0] * (len(trial.sizes) - len(path))
        found.append({k: v for k, v in trial.params.items() if k not in ("width", "depth")})
        # Advance the odometer: the last position that can still grow, later ones reset.
        for position in reversed(range(len(trial.sizes))):
            if path[position] + 1 < trial.sizes[position]:
                path = path[:position] + [path[position] + 1]
                break
        else:
            return found


def _best_numeric(structure: dict[str, Any]) -> float:
    """The structure's best value over width (bounded scalar search, then a grid) and depth."""
    low, high = (math.log2(w) for w in mixed.WIDTH_RANGE)
    best = -math.inf
    for depth in range(mixed.DEPTH_RANGE[0], mixed.DEPTH_RANGE[1] + 1):

        def value(octaves: float, depth: int = depth) -> float:
            return mixed.evaluate({**structure, "width": 2.0**octaves, "depth": depth})

        found = minimize_scalar(lambda x: -value(x), bounds=(low, high), method="bounded")
        grid = max(value(x) for x in np.linspace(low, high, 61))
        best = max(best, -found.fun, grid, value(low), value(high))
    return best


def test_optimum_matches_an_exhaustive_search() -> None:
    structures = _structures()
    values = [_best_numeric(s) for s in structures]
    assert mixed.optimum() == pytest.approx(max(values), abs=1e-6)
    best = structures[int(np.argmax(values))]
    assert best == mixed.params_of("cell", mixed.BEST_CELL)


def test_every_branch_has_at_least_50_structures() -> None:
    counts = Counter(s["branch"] for s in _structures())
    assert counts == {"cell": 72, "conv": 50, "attn": 60}


def test_suggest_agrees_with_an_optuna_trial() -> None:
    study = optuna.create_study(direction="maximize")
    decoy = {**mixed.decoy_params(), "width": 64.0, "depth": 4}
    study.enqueue_trial(decoy)
    study.optimize(mixed.objective, n_trials=1)
    trial = study.trials[0]
    assert trial.params == decoy
    assert mixed_spaces.structure_of(trial) == tuple(sorted(mixed.decoy_params().items()))
    assert trial.value == pytest.approx(mixed.evaluate(decoy))
    assert mixed.optimum() - trial.value >= mixed.TOP - mixed.DECOY


def test_quick_run_writes_the_summary(tmp_path: Path) -> None:
    assert mixed_spaces.main(["--quick", "--workers", "1", "--out", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| deepens | 2 | 20 |" in summary and "| random | 2 | 20 |" in summary
    payload = json.loads((tmp_path / "deepens.json").read_text())
    assert [run["seed"] for run in payload["runs"]] == [0, 1]
    for run in payload["runs"]:
        assert len(run["trace"]) == 20
        assert 0 < run["distinct_structures"] <= run["guided"] <= 20 - mixed_spaces.STARTUP
        assert run["regret"] == pytest.approx(run["regret_at_20"])
        assert run["regret"] >= run["structure_regret"] - 1e-9 >= -1e-9

"""LCBench's summary arithmetic, on made-up runs: needs no benchmark data."""

from __future__ import annotations

from pathlib import Path
import sys

import pytest

pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lcbench  # noqa: E402


def _results(budget: int, regret_at_50: float, regret_at_100: float | None) -> dict:
    run = {"regret_at_50": regret_at_50, "regret_at_100": regret_at_100}
    return {"budget": budget, "runs": [run, dict(run)]}


def test_ranks_stop_at_each_methods_budget() -> None:
    # A budget-50 run stopped at the reference has a regret "at 100" (0: it stopped there);
    # ranking it at 100 against runs that went to 100 would compare different budgets.
    results = {
        "task-a": {
            "deepens": _results(50, 0.0, 0.0),
            "gp": _results(50, 0.5, None),
            "tpe": _results(50, 0.0, 0.0),
        },
        "task-b": {"deepens": _results(50, 2.0, None), "gp": _results(50, 1.0, None)},
    }
    ranks = lcbench.mean_ranks(results)
    assert ranks["deepens"]["rank_at_50"] == pytest.approx((1.5 + 2.0) / 2)  # Tie, then 2nd.
    assert ranks["gp"]["rank_at_50"] == pytest.approx((3.0 + 1.0) / 2)
    assert ranks["tpe"]["tasks"] == 1
    assert all("rank_at_100" not in r for r in ranks.values())
    assert ranks["gp"]["regret_at_50"] == pytest.approx(0.75)

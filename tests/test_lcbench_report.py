"""LCBench's summary arithmetic, on made-up runs: needs no benchmark data."""

from __future__ import annotations

from pathlib import Path
import sys

import pytest

pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lcbench  # noqa: E402


def _results(
    budget: int, regret_at_50: float, regret_at_100: float | None, seeds: int = 2
) -> dict:
    run = {"regret_at_50": regret_at_50, "regret_at_100": regret_at_100}
    return {"budget": budget, "runs": [run | {"seed": seed} for seed in range(seeds)]}


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


def test_the_protocol_table_ranks_the_protocol_methods_alone() -> None:
    # A variant (deepens-ts) tied with GP would push GP from rank 1 to 1.5: the target
    # compares the protocol's four methods, on the tasks where all four ran.
    complete = {
        "deepens": _results(50, 0.2, None),
        "gp": _results(50, 0.1, None),
        "tpe": _results(50, 0.1, None),
        "random": _results(50, 3.0, None),
        "deepens-ts": _results(50, 0.1, None),
    }
    results = {"task-a": complete, "task-b": {"deepens": _results(50, 9.0, None)}}
    lines = lcbench.protocol_table(results, lcbench.MONO)
    assert "over the 1 tasks" in lines[0]
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ")}
    assert rows["gp"] == "| gp | 1.50 | 0.100 | 1 tasks |"  # Tied with TPE only.
    assert rows["deepens"] == "| deepens | 3.00 | 0.200 | 0 tasks |"
    assert "deepens-ts" not in rows
    assert lcbench.protocol_table({"task-b": results["task-b"]}, lcbench.MONO) == []


def test_the_protocol_table_pairs_seeds_and_reports_each_budget() -> None:
    # GPSampler at budget 100 costs a minute a run, so it may have fewer seeds than its peers:
    # a peer's other seeds (here deepens's bad seed 1) must not enter the comparison.
    per_task = {
        "deepens": _results(100, 0.2, 0.1),
        "gp": _results(100, 0.4, 0.3, seeds=1),
        "tpe": _results(100, 1.0, 0.5),
        "random": _results(100, 3.0, 2.0),
    }
    per_task["deepens"]["runs"][1] |= {"regret_at_50": 9.0, "regret_at_100": 9.0}
    lines = lcbench.protocol_table({"task-a": per_task}, lcbench.MONO)
    assert "(1 per task)" in lines[0]
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ")}
    assert rows["deepens"] == "| deepens | 1.00 | 0.200 | 1.00 | 0.100 | 1 tasks |"
    assert rows["gp"] == "| gp | 2.00 | 0.400 | 2.00 | 0.300 | 0 tasks |"
    assert "lowest regret @100 on" in lines[2]

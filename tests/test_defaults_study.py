"""benchmarks/defaults_study.py: ranks per dataset, censored runs, common seeds, mean ranks."""

from __future__ import annotations

import json
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import defaults_study  # noqa: E402


def _write(results: Path, family: str, dataset: str, arm: str, runs: list[dict]) -> None:
    directory = results / ("nb201-acquisition" if family == "nb201" else "nbgraph") / dataset
    directory.mkdir(parents=True, exist_ok=True)
    record = {"runs": runs, "budget": 300 if family == "nb201" else 100, "commit": "abc1234"}
    (directory / f"{arm}.json").write_text(json.dumps(record))


def test_ranks_share_ties() -> None:
    ranks = defaults_study._average_ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 2.0})
    assert ranks == {"a": 3.5, "b": 1.0, "c": 3.5, "d": 2.0}


def test_arms_are_ranked_per_dataset_on_common_seeds(tmp_path: Path) -> None:
    # NAS-Bench-201: UCB's censored run counts as the budget (300), so it ranks last; PI's
    # third seed is not run by the others and is left out (with it PI would rank ahead of EI).
    evals = {"deepens": [10, 20], "deepens-pi": [30, 40, 1], "deepens-ei": [25, 25]}
    evals["deepens-ucb"] = [None, 10]
    for arm, values in evals.items():
        runs = [{"seed": s, "evals_to_optimum": v} for s, v in enumerate(values)]
        _write(tmp_path, "nb201", "cifar10", arm, runs)
    # NAS-Bench-Graph: regret at 100 (fractions, reported in pp); EI best here.
    regrets = {"deepens": 0.02, "deepens-pi": 0.03, "deepens-ei": 0.01, "deepens-ucb": 0.04}
    for arm, regret in regrets.items():
        runs = [{"seed": s, "regret_at_100": regret} for s in range(3)]
        _write(tmp_path, "nbgraph", "cora", arm, runs)

    rows, notes = defaults_study.study(tmp_path)

    nb201, cora = rows
    assert nb201["seeds"] == 2 and nb201["means"]["deepens-ucb"] == 155.0
    assert [nb201["ranks"][a] for a in defaults_study.ARMS] == [1.0, 3.0, 2.0, 4.0]
    assert np.isclose(cora["means"]["deepens-ei"], 1.0)
    assert [cora["ranks"][a] for a in defaults_study.ARMS] == [2.0, 3.0, 1.0, 4.0]
    assert len(notes) == len(defaults_study.NB201) + len(defaults_study.NBGRAPH) - 2
    text = defaults_study.report(rows, notes)
    # Mean ranks over both datasets: TS 1.5, PI 3, EI 1.5, UCB 4 (one dataset a family, so
    # the families' equal weight gives the same).
    assert "| all | 2 | **1.50** | 3.00 | **1.50** | 4.00 |" in text
    assert "| families, equal weight | 2 | **1.50** | 3.00 | **1.50** | 4.00 |" in text


def test_each_default_gets_its_own_section(tmp_path: Path) -> None:
    # The trust region's arms on one dataset: on (deepens-tr) is worse here; the acquisition's
    # arms are missing beside deepens, so that section says so instead of a table.
    for arm, evals in {"deepens": [10, 20], "deepens-tr": [30, 40]}.items():
        runs = [{"seed": s, "evals_to_optimum": v} for s, v in enumerate(evals)]
        _write(tmp_path, "nb201", "cifar100", arm, runs)

    assert defaults_study.main(["--results", str(tmp_path)]) == 0

    text = (tmp_path / "defaults_study.md").read_text()
    acquisition, trust_region = text.split("## The acquisition")[1].split("## The trust region")
    assert "No dataset has runs of every arm yet" in acquisition
    assert "| nb201 | cifar100 | 2 | **15.00** (1) | 35.00 (2) | abc1234 |" in trust_region
    assert "| NAS-Bench-201 | 1 | **1.00** | 2.00 |" in trust_region
    assert "| all |" not in trust_region  # One family measured: nothing to pool.


def test_multi_fidelity_defaults_rank_lcbench_by_regret_at_50(tmp_path: Path) -> None:
    """LCBench's regret is already in pp; a seed without a full result by 50 is left out; tasks
    without every arm are noted once, grouped."""
    directory = tmp_path / "lcbench-multi-b50" / "3945"
    directory.mkdir(parents=True)
    # Seed 2 of deepens-mf had no full result by 50 (null): left out of both arms.
    arms = {"deepens-mf": [0.5, 0.3, None], "deepens-mf-fixed": [0.2, 0.2, 9.0]}
    for arm, regrets in arms.items():
        runs = [{"seed": s, "regret_at_50": r} for s, r in enumerate(regrets)]
        record = {"runs": runs, "budget": 50, "commit": "abc1234"}
        (directory / f"{arm}.json").write_text(json.dumps(record))
    default = defaults_study.STUDIES["multi-fidelity schedule"]

    rows, notes = defaults_study.study(tmp_path, default.arms, default.sources)

    (row,) = rows
    assert row["family"] == "lcbench-mf" and row["means"]["deepens-mf"] == 0.4
    assert row["ranks"] == {"deepens-mf": 2.0, "deepens-mf-fixed": 1.0}
    text = defaults_study.report(rows, notes, default.arms, default.sources)
    assert "| lcbench-mf | 3945 | 2 | 0.40 (2) | **0.20** (1) | abc1234 |" in text
    assert "| LCBench, multi-fidelity | 1 | 2.00 | **1.00** |" in text
    n_tasks = len(defaults_study.LCBENCH_MF_SOURCE.datasets)
    assert f"lcbench-mf, {n_tasks - 1} datasets (" in text


def test_families_count_once_in_the_equal_weight_row(tmp_path: Path) -> None:
    """Two LCBench tasks favour the fixed schedule, one NAS-Bench-201 dataset promotion: the
    pooled rank sides with the family that has more datasets, the equal weight does not."""
    arms = {"deepens-mf": 0.5, "deepens-mf-fixed": 0.2}
    for task in ("3945", "7593"):
        directory = tmp_path / "lcbench-multi-b50" / task
        directory.mkdir(parents=True)
        for arm, regret in arms.items():
            runs = [{"seed": 0, "regret_at_50": regret}]
            record = {"runs": runs, "budget": 50, "commit": "abc1234"}
            (directory / f"{arm}.json").write_text(json.dumps(record))
    directory = tmp_path / "nb201" / "cifar10"
    directory.mkdir(parents=True)
    for arm, evals in {"deepens-mf": 10, "deepens-mf-fixed": 20}.items():
        runs = [{"seed": 0, "evals_to_optimum": evals}]
        record = {"runs": runs, "budget": 60, "commit": "abc1234"}
        (directory / f"{arm}.json").write_text(json.dumps(record))
    default = defaults_study.STUDIES["multi-fidelity schedule"]

    rows, notes = defaults_study.study(tmp_path, default.arms, default.sources)
    text = defaults_study.report(rows, notes, default.arms, default.sources)

    assert "| all | 3 | 1.67 | **1.33** |" in text
    assert "| families, equal weight | 3 | **1.50** | **1.50** |" in text

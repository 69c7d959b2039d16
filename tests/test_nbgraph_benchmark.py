"""The NAS-Bench-Graph harness in benchmarks/: the space, the objective, baselines, --quick.

Needs the ``nas-bench-graph`` package (its tables ship inside it); every test skips without it.
No value of the tables is copied here: expected values are looked up by the package's own
``Arch(...).valid_hash()`` in the table the harness loads.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
import sys

import numpy as np
import optuna
import pytest

nas_bench_graph = pytest.importorskip("nas_bench_graph")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import nbgraph  # noqa: E402
import nbgraph_table  # noqa: E402

ALL_SKIP = ("skip",) * 4


@pytest.fixture(scope="module")
def cora() -> nbgraph_table.NBGraphTable:
    return nbgraph_table.load_table("cora")


def _package_key(link: str, ops: tuple[str, ...]) -> int:
    return nas_bench_graph.Arch([int(i) for i in link.split(",")], list(ops)).valid_hash()


def test_the_space_is_the_packages() -> None:
    assert nbgraph_table.LINKS == tuple(
        ",".join(map(str, link)) for link in nas_bench_graph.link_list
    )
    assert nbgraph_table.OPS == tuple(nas_bench_graph.gnn_list)
    assert nbgraph_table.PROTEINS_OPS == tuple(nas_bench_graph.gnn_list_proteins)


@pytest.mark.parametrize(
    ("dataset", "n_ops", "n_keys"), [("cora", 9, 26206), ("proteins", 5, 2021)]
)
def test_the_suggest_calls_cover_exactly_the_table(dataset: str, n_ops: int, n_keys: int) -> None:
    table = nbgraph_table.load_table(dataset)
    # The objective's suggest calls create exactly the declared space.
    study = optuna.create_study(direction="maximize")
    study.optimize(nbgraph_table.make_objective(table), n_trials=1)
    assert study.trials[0].distributions == nbgraph_table.search_space(dataset)
    # Every assignment of that space, by the package's own hash.
    space = nbgraph_table.search_space(dataset)
    assert [len(d.choices) for d in space.values()] == [9, n_ops, n_ops, n_ops, n_ops]
    keys: dict[int, list[tuple]] = {}
    for link, *ops in itertools.product(*(d.choices for d in space.values())):
        keys.setdefault(_package_key(link, tuple(ops)), []).append((link, tuple(ops)))
    assert len(table.entries) == n_keys
    assert set(table.entries) <= set(keys)  # Every row is reachable.
    (missing,) = set(keys) - set(table.entries)  # One network is not: all-skip, 9 ways.
    assert sorted(keys[missing]) == [(link, ALL_SKIP) for link in nbgraph_table.LINKS]
    assert nbgraph_table.missing_assignments(table) == keys[missing]


def test_the_nine_operation_datasets_share_their_networks(cora) -> None:
    for dataset in nbgraph_table.DATASETS:
        if dataset not in ("cora", "proteins"):
            assert set(nbgraph_table.load_table(dataset).entries) == set(cora.entries), dataset


def test_only_the_packaged_tables_are_loaded() -> None:
    with pytest.raises(ValueError, match="Unknown NAS-Bench-Graph dataset"):
        nbgraph_table.load_table("../../../tmp/evil")


def test_objective_returns_the_table_value_and_records_zero_cost_metrics(cora) -> None:
    params = {"link": "0,0,0,1", "op0": "gcn", "op1": "gat", "op2": "sage", "op3": "fc"}
    trial = optuna.trial.FixedTrial(params)
    objective = nbgraph_table.make_objective(cora, record_metrics=nbgraph_table.ZERO_COST_METRICS)
    entry = cora.entries[_package_key("0,0,0,1", ("gcn", "gat", "sage", "fc"))]
    assert objective(trial) == entry.valid
    assert trial.user_attrs == {"zc_params_m": entry.params_m, "zc_latency_ms": entry.latency_ms}
    # The table's units: parameters in millions, latency in seconds turned into milliseconds.
    assert 0.1 < entry.params_m < 10 and 0.1 < entry.latency_ms < 100
    # Nodes 1 and 2 both read node 0: swapping their operations is the same network.
    swapped = optuna.trial.FixedTrial({**params, "op1": "sage", "op2": "gat"})
    assert nbgraph_table.make_objective(cora)(swapped) == entry.valid
    assert swapped.user_attrs == {}  # Metrics only when asked for (see nbgraph.Method).


def test_an_all_skip_network_scores_the_worst_value(cora) -> None:
    params = {"link": "0,1,2,3", **dict(zip(nbgraph_table.OP_PARAMS, ALL_SKIP))}
    trial = optuna.trial.FixedTrial(params)
    objective = nbgraph_table.make_objective(cora, record_metrics=nbgraph_table.ZERO_COST_METRICS)
    assert objective(trial) == cora.worst == min(e.valid for e in cora.entries.values())
    assert trial.user_attrs == {nbgraph_table.MISSING_ATTR: True}


def test_pretraining_records_are_distinct_networks_of_the_table(cora) -> None:
    from optuna_deepens import PretrainingSet

    records = nbgraph_table.pretraining_records(cora, 300, seed=1)
    keys = [nbgraph_table.architecture_id(r) for r in records]
    assert len(set(keys)) == 300
    for record, key in zip(records, keys):
        entry = cora.entries[key]
        assert (record["params_m"], record["latency_ms"]) == (entry.params_m, entry.latency_ms)
    assert records == nbgraph_table.pretraining_records(cora, 300, seed=1)
    space = nbgraph_table.search_space("cora")
    assert len(PretrainingSet.from_records(records, search_space=space)) == 300


@pytest.mark.parametrize("dataset", ["cora", "proteins"])
@pytest.mark.parametrize("method", ["local-search", "evolution"])
def test_baselines_never_repeat_a_network(dataset: str, method: str) -> None:
    spec = nbgraph.RunSpec(dataset, method, seed=3, budget=300)
    study, record = nbgraph.run_study(spec, stop_at_optimum=False)
    assert record["n_trials"] == 300
    assert record["distinct_archs"] == 300  # Isomorphic assignments count as one network.
    assert {k: v for k, v in record.items() if k != "wall_s"} == {
        k: v for k, v in nbgraph.run_study(spec, stop_at_optimum=False)[1].items() if k != "wall_s"
    }


def test_a_run_stops_at_the_optimum() -> None:
    table = nbgraph_table.load_table("proteins")
    # Local search finds proteins' optimum (2 of 5,625 assignments) after 30 evaluations, seed 0.
    spec = nbgraph.RunSpec("proteins", "local-search", seed=0, budget=300)
    _, record = nbgraph.run_study(spec)
    found = record["evals_to_optimum"]
    assert found is not None and record["n_trials"] == found
    assert record["best"] == table.optimum and record["regret"] == 0.0
    assert record["test_of_best"] == table.test_of_optimum()
    for checkpoint in nbgraph.CHECKPOINTS:
        if found <= checkpoint:
            assert record[f"regret_at_{checkpoint}"] == 0.0


def test_default_and_quick_arguments() -> None:
    args = nbgraph.parse_args([])
    assert args.datasets == list(nbgraph_table.DATASETS) and len(args.datasets) == 9
    assert args.methods == list(nbgraph.PROTOCOL_METHODS)
    assert (args.seeds, args.budget, args.workers) == (20, 100, 2)
    assert args.out == nbgraph.RESULTS_DIR
    quick = nbgraph.parse_args(["--quick"])
    assert (quick.seeds, quick.budget, len(quick.datasets)) == (2, 25, 2)
    assert quick.out == nbgraph.QUICK_RESULTS_DIR
    every = nbgraph.parse_args(["--methods", "all"]).methods
    assert {"deepens-ts", "deepens-pi", "deepens-ucb", "deepens-ei", "gp"} <= set(every)


def test_mean_ranks_share_ties() -> None:
    def results(regret: float, evals: float | None) -> dict:
        run = {"seed": 0, "regret": regret, "evals_to_optimum": evals}
        return {"budget": 100, "runs": [run]}

    ranks = nbgraph.mean_ranks(
        {
            "cora": {"a": results(0.0, 10.0), "b": results(0.01, None), "c": results(0.0, 30.0)},
            "pubmed": {"a": results(0.02, None), "b": results(0.01, None)},
        }
    )
    assert ranks["a"] == {"regret": 1.75, "evals": 1.25, "datasets": 2}
    assert ranks["b"] == {"regret": 2.0, "evals": 2.25, "datasets": 2}
    assert ranks["c"] == {"regret": 1.5, "evals": 2.0, "datasets": 1}


def _results(*regrets: float) -> dict:
    """A method's results with only what the summary reads: final regrets, all censored."""
    runs = [
        {"seed": i, "regret": r, "evals_to_optimum": None, "wall_s": 1.0}
        for i, r in enumerate(regrets)
    ]
    return {"budget": 100, "runs": runs}


def test_peers_are_ahead_behind_or_within_noise_by_two_standard_errors() -> None:
    ours = _results(0.010, 0.012, 0.008, 0.010)  # mean 1.0 pp, SE 0.08 pp
    all_results = {
        "cora": {"deepens": ours, "gp": _results(0.02, 0.021, 0.019, 0.02)},  # +1.0 pp: ahead
        "photo": {"deepens": ours, "gp": _results(0.0, 0.002, 0.0, 0.0), "tpe": ours},
        "cs": {"gp": _results(0.0, 0.0)},  # No deepens runs: not compared.
    }

    table = nbgraph.against_peers(all_results)

    diff, se = table["gp"]["cora"]
    assert np.isclose(diff, 1.0) and 0 < se < 0.1
    assert table["gp"]["photo"][0] < -2 * table["gp"]["photo"][1]  # Behind.
    assert table["tpe"]["photo"] == (0.0, table["tpe"]["photo"][1])
    assert "cs" not in table["gp"] and set(table) == {"gp", "tpe"}
    lines = "\n".join(nbgraph._peer_lines(all_results))
    assert "| gp | +1.00 ± 0.09 | -0.95 ± 0.10 | 1 | 0 | 1 |" in lines
    assert "| tpe | – | +0.00 ± 0.12 | 0 | 1 | 0 |" in lines


def test_summary_judges_transfer_against_the_cold_rows_of_its_directory(tmp_path: Path) -> None:
    cold = _results(0.010, 0.012, 0.008, 0.010)
    warm = _results(0.002, 0.004, 0.000, 0.002)  # 0.8 pp lower than cold, SE 0.09 pp
    nbgraph.write_summary(tmp_path, {"cora": {"deepens": cold, "deepens-related": warm}}, "")
    text = (tmp_path / "summary.md").read_text()
    assert "## `deepens-related` against each peer" in text
    assert "| deepens | +0.80 ± 0.12 | 1 | 0 | 0 |" in text


def test_relatedness_reads_where_one_tables_best_networks_rank_on_another() -> None:
    def table(values) -> nbgraph_table.NBGraphTable:
        entries = {
            k: nbgraph_table.Entry(float(v), float(v), 1.0, 1.0) for k, v in enumerate(values)
        }
        return nbgraph_table.NBGraphTable("cora", entries, max(values), min(values))

    values = np.arange(201.0)
    same = nbgraph_table.relatedness(table(values), table(values))
    assert np.isclose(same.spearman, 1) and same.top_at_target > 0.98
    assert same.optimum_at_source == 1.0
    reversed_ = nbgraph_table.relatedness(table(values), table(-values))
    assert np.isclose(reversed_.spearman, -1) and reversed_.top_at_target < 0.02
    assert reversed_.optimum_at_source == 0.0
    # Ties share their mean rank: a constant source says nothing (its "top" is the middle).
    flat = nbgraph_table.relatedness(table(values), table(np.zeros(201)))
    assert flat.optimum_at_source == 0.5


def test_quick_mode_writes_results_of_the_required_shape(tmp_path: Path) -> None:
    methods = ["deepens", "local-search", "random"]
    argv = ["--quick", "--out", str(tmp_path), "--budget", "12", "--workers", "1"]
    assert nbgraph.main([*argv, "--methods", *methods]) == 0

    for dataset in nbgraph.QUICK_DATASETS:
        for method in methods:
            results = json.loads((tmp_path / dataset / f"{method}.json").read_text())
            assert (results["dataset"], results["method"], results["budget"]) == (
                dataset,
                method,
                12,
            )
            assert results["optimum"] == nbgraph_table.load_table(dataset).optimum
            assert [run["seed"] for run in results["runs"]] == [0, 1]
            for run in results["runs"]:
                found = run["evals_to_optimum"]
                assert found is None or 1 <= found <= 12
                assert run["n_trials"] == run["cost"] <= 12
                assert run["best_at_25"] == run["regret_at_25"] == run["best_at_100"] is None
                assert run["regret"] == pytest.approx(results["optimum"] - run["best"])
                assert 0 < run["test_of_best"] < 1 and 1 <= run["distinct_archs"] <= 12
                assert run["curve"][-1][1] == run["best"]
        deepens = json.loads((tmp_path / dataset / "deepens.json").read_text())
        assert all(run["sources"]["model"] >= 1 for run in deepens["runs"])
    summary = (tmp_path / "summary.md").read_text()
    assert "## Cora (`cora`)" in summary and "## ogbn-proteins (`proteins`)" in summary
    assert "## Mean rank over datasets" in summary
    assert summary.count("| local-search | 12 | 2 |") == 2

    # --resume keeps every finished run: nothing left to do, the files are unchanged.
    before = (tmp_path / "cora" / "random.json").read_text()
    assert nbgraph.main([*argv, "--methods", *methods, "--resume"]) == 0
    assert (tmp_path / "cora" / "random.json").read_text() == before

"""The NAS-Bench-Graph tables as ordinary Optuna objectives.

NAS-Bench-Graph (Qin et al., NeurIPS 2022 Datasets and Benchmarks) trained every graph neural
network of a small macro space on nine datasets. A network has four computing nodes; its
``link`` pattern says which earlier node feeds each one (9 patterns, one per shape up to
relabelling) and each node applies one of 9 operations (5 on ``proteins``). A row of the table
replaces training, so a search strategy can be run hundreds of times.

Everything here is the *benchmark*, not a search method: the table (loaded once per process),
the five-parameter search space, the objective and the zero-cost metrics. The samplers never
import this module; they only see ``trial.suggest_categorical``.

Several assignments can build the same network (e.g. the operations of two parallel nodes
swapped): the package's ``Arch(link, ops).valid_hash()`` maps them to one table key. The 9 x 9^4
= 59,049 assignments make 26,207 keys, of which 26,206 are in each table; proteins' 9 x 5^4 =
5,625 make 2,022 keys, 2,021 in its table. The key left out is the all-``skip`` network (no
GNN layer at all), one for each of the 9 link patterns: the objective answers it with the
dataset's worst validation value (see :func:`make_objective`).

Security: the tables are pickles. They are unpickled only here, only through the package's
``light_read``, which reads the files shipped inside the installed ``nas_bench_graph``, and
only for a name of ``DATASETS`` (the name becomes part of the file's path): never a path a
user gives. Nothing of the tables is copied into the repository.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
import functools
import itertools
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

DATASETS = (
    "cora",
    "citeseer",
    "pubmed",
    "cs",
    "physics",
    "photo",
    "computers",
    "arxiv",
    "proteins",
)
DATASET_LABELS = {
    "cora": "Cora",
    "citeseer": "CiteSeer",
    "pubmed": "PubMed",
    "cs": "Coauthor-CS",
    "physics": "Coauthor-Physics",
    "photo": "Amazon-Photo",
    "computers": "Amazon-Computers",
    "arxiv": "ogbn-arxiv",
    "proteins": "ogbn-proteins",
}
# The package's ``link_list`` and ``gnn_list`` / ``gnn_list_proteins``, copied so that the
# space (and a test of it) does not depend on the package's import; a test checks they agree.
LINKS = (
    "0,0,0,0",
    "0,0,0,1",
    "0,0,1,1",
    "0,0,1,2",
    "0,0,1,3",
    "0,1,1,1",
    "0,1,1,2",
    "0,1,2,2",
    "0,1,2,3",
)
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
PROTEINS_OPS = ("gcn", "sage", "arma", "fc", "skip")
N_NODES = 4
LINK_PARAM = "link"
OP_PARAMS = tuple(f"op{i}" for i in range(N_NODES))
# Distinct architectures (table keys) per dataset; the loader checks them.
N_ARCHITECTURES = {name: 2021 if name == "proteins" else 26206 for name in DATASETS}

# The nb201 harness's names and units: parameters in millions (the table's ``para``) and
# latency in milliseconds (the table's ``latency`` is in seconds), recorded as ``zc_<name>``.
ZERO_COST_METRICS = ("params_m", "latency_ms")
MISSING_ATTR = "nbgraph_missing"  # True on a trial of an all-skip assignment (not in the table).

Architecture = tuple[str, tuple[str, ...]]  # (link pattern, the four operations)


@dataclass(frozen=True)
class Entry:
    """One architecture's row: validation and test performance, and its zero-cost metrics."""

    valid: float
    test: float
    params_m: float
    latency_ms: float


@dataclass(frozen=True)
class NBGraphTable:
    """One dataset's table, indexed by ``valid_hash`` key."""

    dataset: str
    entries: dict[int, Entry]
    optimum: float  # The best validation performance: the value a run must reach.
    worst: float  # The worst validation performance: what a missing assignment scores.

    @property
    def ops(self) -> tuple[str, ...]:
        return ops_for(self.dataset)

    def entry(self, link: str, ops: Sequence[str]) -> Entry | None:
        """The row of an assignment; None for the all-skip networks, which the table lacks."""
        return self.entries.get(arch_key(link, tuple(ops)))

    def optimal_keys(self) -> list[int]:
        return [k for k, e in self.entries.items() if e.valid == self.optimum]

    def test_of_optimum(self) -> float:
        """The test performance of the best-by-validation architecture (first if tied)."""
        return self.entries[self.optimal_keys()[0]].test

    def max_test(self) -> float:
        return max(e.test for e in self.entries.values())


def ops_for(dataset: str) -> tuple[str, ...]:
    """Operations of ``dataset``'s space: proteins was run with five of the nine."""
    return PROTEINS_OPS if dataset == "proteins" else OPS


@functools.cache
def arch_key(link: str, ops: tuple[str, ...]) -> int:
    """The table key of an assignment: isomorphic assignments share one (cached: ~0.1 ms)."""
    from nas_bench_graph import Arch

    return int(Arch([int(i) for i in link.split(",")], list(ops)).valid_hash())


@functools.cache
def load_table(dataset: str) -> NBGraphTable:
    """``dataset``'s table from the installed package (once per process, ~0.1 s)."""
    if dataset not in DATASETS:  # The name is part of a pickle's path: only known ones.
        raise ValueError(f"Unknown NAS-Bench-Graph dataset {dataset!r}; choose from {DATASETS}.")
    try:
        from nas_bench_graph import light_read
    except ImportError as err:
        raise ImportError(
            "NAS-Bench-Graph needs its package: pip install 'optuna-deepens[nasbench-graph]' "
            "(or pip install nas-bench-graph)."
        ) from err
    raw: Mapping[Any, Mapping[str, Any]] = light_read(dataset)
    entries = {
        int(key): Entry(
            valid=float(row["valid_perf"]),
            test=float(row["perf"]),
            params_m=float(row["para"]),
            latency_ms=1000.0 * float(row["latency"]),
        )
        for key, row in raw.items()
    }
    if len(entries) != N_ARCHITECTURES[dataset]:
        raise ValueError(
            f"NAS-Bench-Graph {dataset}: expected {N_ARCHITECTURES[dataset]} architectures, "
            f"found {len(entries)}; is nas-bench-graph>=1.4 installed?"
        )
    valid = [e.valid for e in entries.values()]
    return NBGraphTable(dataset, entries, optimum=max(valid), worst=min(valid))


def search_space(dataset: str) -> dict[str, CategoricalDistribution]:
    """The distributions the objective's suggest calls create, for samplers that need them."""
    ops = ops_for(dataset)
    return {LINK_PARAM: CategoricalDistribution(LINKS)} | {
        name: CategoricalDistribution(ops) for name in OP_PARAMS
    }


def suggest_architecture(trial: optuna.Trial, dataset: str) -> Architecture:
    """The link pattern, then the operation of each of the four nodes."""
    link = trial.suggest_categorical(LINK_PARAM, LINKS)
    ops = tuple(trial.suggest_categorical(name, ops_for(dataset)) for name in OP_PARAMS)
    return str(link), tuple(str(op) for op in ops)


def architecture_of(params: Mapping[str, Any]) -> Architecture:
    """The (link, ops) of a trial's params."""
    return str(params[LINK_PARAM]), tuple(str(params[name]) for name in OP_PARAMS)


def architecture_id(params: Mapping[str, Any]) -> int:
    """The network an assignment builds (its table key), for the baselines' visited set."""
    return arch_key(*architecture_of(params))


def all_assignments(dataset: str) -> Iterator[Architecture]:
    """Every assignment of the space: 59,049 (proteins 5,625)."""
    for link in LINKS:
        for ops in itertools.product(ops_for(dataset), repeat=N_NODES):
            yield link, ops


def missing_assignments(table: NBGraphTable) -> list[Architecture]:
    """Assignments without a row (the 9 all-skip ones); enumerates the space, ~1 s."""
    return [a for a in all_assignments(table.dataset) if table.entry(*a) is None]


def make_objective(
    table: NBGraphTable, record_metrics: Sequence[str] = ()
) -> Callable[[optuna.Trial], float]:
    """An ordinary Optuna objective returning the validation performance (maximise).

    The NAS-Bench-Graph protocol selects on validation; the test value of the chosen
    architecture is read from the table afterwards, never shown to the search.

    An all-skip assignment, which the table lacks, scores the dataset's worst validation value
    and counts as an evaluation, its trial marked with ``nbgraph_missing``: the search asked
    for it, so it pays, and a poor value teaches a model-based sampler to avoid it instead of
    leaving a hole (a FAIL) that each sampler would treat differently.

    ``record_metrics`` names zero-cost metrics (``ZERO_COST_METRICS``) the trial records as
    ``zc_*`` user attrs, as an objective measuring its model would; an all-skip trial records
    none (the table has no row for it).
    """
    from optuna_deepens import zero_cost

    unknown = set(record_metrics) - set(ZERO_COST_METRICS)
    if unknown:
        raise ValueError(f"Unknown metrics {sorted(unknown)}; the table has {ZERO_COST_METRICS}.")

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, table.dataset)
        entry = table.entry(*arch)
        if entry is None:
            trial.set_user_attr(MISSING_ATTR, True)
            return table.worst
        zero_cost.record(trial, {name: getattr(entry, name) for name in record_metrics})
        return entry.valid

    return objective


def zero_cost_metrics(table: NBGraphTable, link: str, ops: Sequence[str]) -> dict[str, float]:
    """Parameters (M) and latency (ms) of an architecture: known without training."""
    entry = table.entry(link, ops)
    if entry is None:
        raise KeyError(f"{arch_string(link, ops)} is not in the {table.dataset} table.")
    return {name: getattr(entry, name) for name in ZERO_COST_METRICS}


def pretraining_records(
    table: NBGraphTable,
    n: int,
    seed: int,
    metrics: Sequence[str] = ZERO_COST_METRICS,
) -> list[dict[str, float | str]]:
    """``n`` distinct random architectures with their zero-cost metrics from the table.

    Assignments are drawn uniformly from the space, as a user would sample it, and kept if
    their network is new and in the table; so ``n`` distinct table keys, each as the first
    assignment drawn for it.
    """
    if n > len(table.entries):
        raise ValueError(f"{table.dataset} has only {len(table.entries)} architectures.")
    rng = np.random.default_rng(seed)
    ops = table.ops
    seen: set[int] = set()
    records: list[dict[str, float | str]] = []
    while len(records) < n:
        link = LINKS[int(rng.integers(len(LINKS)))]
        chosen = tuple(ops[int(i)] for i in rng.integers(len(ops), size=N_NODES))
        key = arch_key(link, chosen)
        if key in seen or key not in table.entries:
            continue
        seen.add(key)
        entry = table.entries[key]
        record: dict[str, float | str] = {LINK_PARAM: link, **dict(zip(OP_PARAMS, chosen))}
        record.update({name: float(getattr(entry, name)) for name in metrics})
        records.append(record)
    return records


def arch_string(link: str, ops: Sequence[str]) -> str:
    """``link:op,op,op,op``, e.g. ``0,0,1,2:gcn,gat,skip,fc``, for reports."""
    return f"{link}:{','.join(ops)}"


@dataclass(frozen=True)
class Relatedness:
    """How much a finished study of ``source`` can tell a search on ``target``, from the tables.

    Percentiles run 0-1 over the networks both tables hold (0.5: what a random network gets).
    A related study helps find ``target``'s best only where ``source``'s best networks are near
    the top of ``target`` too.
    """

    spearman: float  # Rank correlation of the two validation values.
    top_at_target: float  # Mean percentile on target of source's top ``share`` of networks.
    optimum_at_source: float  # Percentile on source of target's best network.


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Each value's rank as a share of the others (ties share their mean rank), 0-1."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, averaged over ties
    return (mean_rank[inverse] - 1) / (len(values) - 1)


def relatedness(target: NBGraphTable, source: NBGraphTable, share: float = 0.01) -> Relatedness:
    """:class:`Relatedness` of ``source`` to ``target`` over the networks both tables hold."""
    keys = sorted(set(target.entries) & set(source.entries))
    on_target = np.array([target.entries[k].valid for k in keys])
    on_source = np.array([source.entries[k].valid for k in keys])
    at_target, at_source = _percentiles(on_target), _percentiles(on_source)
    top = np.argsort(-on_source, kind="stable")[: max(1, int(share * len(keys)))]
    constant = at_target.std() == 0 or at_source.std() == 0  # No order to agree on.
    return Relatedness(
        spearman=0.0 if constant else float(np.corrcoef(at_target, at_source)[0, 1]),
        top_at_target=float(at_target[top].mean()),
        optimum_at_source=float(at_source[int(np.argmax(on_target))]),
    )

"""The NAS-Bench-201 search space: same parameters as the benchmark, same costs as its table.

The table checks read ``../shared/benchdata/nb201/nb201.csv`` in place and skip without it; no
values of the table are written here.
"""

from __future__ import annotations

import csv
from pathlib import Path
import random
import sys

import optuna
import pytest
import torch

from search_spaces import nasbench201 as nb201

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import nb201_table  # noqa: E402

DATA = nb201_table.DEFAULT_DATA
CHANNELS = (16, 32, 64)
CONV_PARAMS = {1: 28_000, 3: 243_040}  # one nor_conv edge, over the 15 cells
SHORT = {
    "-": "none",
    "s": "skip_connect",
    "1": "nor_conv_1x1",
    "3": "nor_conv_3x3",
    "a": "avg_pool_3x3",
}


def _config(short: str) -> nb201.NB201Config:
    """``"33s-s-"`` is conv3x3, conv3x3, skip, none, skip, none on edges 0..5."""
    return nb201.NB201Config(tuple(SHORT[c] for c in short))


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_params(config: nb201.NB201Config, num_classes: int = 10) -> int:
    """Written from the benchmark's description, independently of the module's code."""
    stem = 3 * 16 * 9 + 2 * 16
    reductions = sum(
        c_in * c_out * 9 + 2 * c_out + c_out * c_out * 9 + 2 * c_out + c_in * c_out
        for c_in, c_out in ((16, 32), (32, 64))
    )
    head = 2 * 64 + 64 * num_classes + num_classes
    cells = 0
    for op in config.ops:
        k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(op)
        if k is not None:
            cells += sum(5 * (c * c * k * k + 2 * c) for c in CHANNELS)
    return stem + reductions + head + cells


def _duplicated_convs(config: nb201.NB201Config) -> list[int]:
    """Conv edges that apply the same op to the same input as an earlier edge.

    This is the benchmark's string-level notion of a duplicate (its de-duplication of isomorphic
    cells), even though the two convs have separate weights. Skip edges pass their input
    through, so ``edge0 = skip_connect`` makes node 1 a copy of node 0. Every table row whose
    params differ from the built model's has dead or duplicated edges (the reverse is not true).
    """
    terms: dict[int, tuple[str, ...]] = {0: ("x",)}
    seen: set[tuple[str, str]] = set()
    duplicated = []
    for node in range(1, nb201.N_NODES):
        current: list[str] = []
        for i, (op, (src, dst)) in enumerate(zip(config.ops, nb201.EDGES)):
            if dst != node or op == "none" or not terms[src]:
                continue
            source = "+".join(terms[src])
            if op == "skip_connect":
                current.extend(terms[src])
                continue
            if op.startswith("nor_conv") and (op, source) in seen:
                duplicated.append(i)
            seen.add((op, source))
            current.append(f"{op}({source})")
        terms[node] = tuple(sorted(current))
    return duplicated


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    if not DATA.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {DATA} (benchmark data, not in the repo)")
    with DATA.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_space_is_the_benchmarks() -> None:
    assert nb201.OPS == nb201_table.OPS
    assert nb201.EDGE_NAMES == nb201_table.EDGE_NAMES
    assert nb201.SPACE_SIZE == nb201_table.N_ARCHITECTURES == 15_625

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = nb201.suggest(trial)
    assert trial.distributions == nb201_table.search_space()
    assert config.ops == nb201_table.suggest_architecture(optuna.trial.FixedTrial(trial.params))


def test_arch_str_round_trip() -> None:
    arch = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    )
    config = nb201.from_arch_str(arch)
    assert config.ops == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "none",
        "skip_connect",
    )
    assert nb201.to_arch_str(config) == config.arch_str == arch
    # The edges of a node may be listed in any order.
    shuffled = (
        "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|none~1|skip_connect~2|skip_connect~0|"
    )
    assert nb201.from_arch_str(shuffled) == config
    for name, reference in nb201.REFERENCES.items():
        assert nb201.from_arch_str(reference.arch_str) == reference, name


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # two nodes
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~2|+|skip_connect~0|none~1|none~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|",
        "|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|",
    ],
)
def test_from_arch_str_rejects_malformed_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        nb201.from_arch_str(bad)


def test_config_validates_operations() -> None:
    with pytest.raises(ValueError):
        nb201.NB201Config(("none",) * 5)
    with pytest.raises(ValueError):
        nb201.NB201Config(("none",) * 5 + ("conv_5x5",))


@pytest.mark.parametrize(
    ("short", "dead"),
    [
        ("------", ()),
        ("ssssss", ()),
        ("3-3s-s", ()),
        # Node 2 never reaches the output, nor does node 1, which only feeds node 2.
        ("s333--", (0, 1, 2)),
        # Node 1 is never computed from the input (edges out of it are dead), and node 2 does
        # not reach the output (edges into it are dead).
        ("-1ssa-", (1, 2, 4)),
        # The output is cut off from the input: every non-none edge is dead.
        ("1-a---", (0, 2)),
    ],
)
def test_dead_edges(short: str, dead: tuple[int, ...]) -> None:
    config = _config(short)
    assert nb201.dead_edges(config) == dead
    # Dead edges still build (the benchmark keeps them), so they still have parameters.
    assert _params(nb201.build(config)) == _expected_params(config)


def test_duplicated_convs() -> None:
    assert _duplicated_convs(_config("3-3s-s")) == []
    # Separate weights, but the same op on the same input: a duplicate for the benchmark.
    assert _duplicated_convs(_config("333333")) == [1, 3, 4]
    # Node 1 is a copy of node 0, so edges 1 and 2 are the same conv of the same input.
    assert _duplicated_convs(_config("s1111-")) == [2, 3, 4]
    assert _duplicated_convs(_config("s3-33-")) == [3, 4]
    # A different op on the same input is not a duplicate.
    assert _duplicated_convs(_config("s13---")) == []


def test_references_are_well_formed() -> None:
    assert set(nb201.REFERENCES) == {"best_cifar10", "best_cifar10_tied", "resnet"}
    for name, config in nb201.REFERENCES.items():
        assert nb201.dead_edges(config) == (), name
    # The ResNet cell is a basic block: output = input + conv3x3(conv3x3(input)).
    resnet = nb201.REFERENCES["resnet"].ops
    assert resnet == (
        "nor_conv_3x3",
        "none",
        "nor_conv_3x3",
        "skip_connect",
        "none",
        "skip_connect",
    )


def test_params_follow_the_benchmark_skeleton() -> None:
    for config in [*nb201.REFERENCES.values(), nb201.NB201Config(("nor_conv_3x3",) * 6)]:
        for num_classes in (10, 100):
            model = nb201.build(config, num_classes=num_classes)
            assert _params(model) == _expected_params(config, num_classes)


def test_flop_convention_by_hand() -> None:
    """The all-``none`` cell leaves only the skeleton, whose FLOPs we can add up here."""
    macs = (
        3 * 9 * 16 * 32 * 32  # stem conv
        + (16 * 9 + 32 * 9 + 16) * 32 * 16 * 16  # reduction 1: conv_a, conv_b, shortcut conv
        + (32 * 9 + 64 * 9 + 32) * 64 * 8 * 8  # reduction 2
        + 64 * 10  # classifier (its bias is free)
    )
    # ReLU counts 1 per input element, BN 2 per element: ReLU-Conv-BN blocks and the head.
    stem_bn = 2 * 16 * 32 * 32
    reduction_1 = (16 * 32 * 32 + 2 * 32 * 16 * 16) + (32 * 16 * 16 + 2 * 32 * 16 * 16)
    reduction_2 = (32 * 16 * 16 + 2 * 64 * 8 * 8) + (64 * 8 * 8 + 2 * 64 * 8 * 8)
    last_bn_relu = 2 * 64 * 8 * 8 + 64 * 8 * 8
    bn_relu = stem_bn + reduction_1 + reduction_2 + last_bn_relu
    pools = 4 * 16 * 16 * 16 + 4 * 32 * 8 * 8  # the 2x2 shortcut pools
    global_pool = 64 * 9 * 9  # (H + 1) * (W + 1) per channel
    model = nb201.build(_config("------"))
    expected = macs + bn_relu + pools + global_pool
    assert nb201.count_flops(model) * 1e6 == pytest.approx(expected, abs=1e-3)
    # Each nor_conv edge adds ReLU (1) + BN (2) per element on top of its MACs, and each 3x3
    # average pool 9 per element; skip connections and sums are free.
    stages = ((16, 32), (32, 16), (64, 8))  # (channels, resolution), five cells each
    elements = sum(5 * c * r * r for c, r in stages)
    conv1 = nb201.count_flops(nb201.build(_config("1-----"))) - nb201.count_flops(model)
    assert conv1 * 1e6 == pytest.approx(sum(5 * c * c * r * r for c, r in stages) + 3 * elements)
    pool = nb201.count_flops(nb201.build(_config("a-----"))) - nb201.count_flops(model)
    assert pool * 1e6 == pytest.approx(9 * elements, abs=1e-3)
    skip = nb201.count_flops(nb201.build(_config("ssssss"))) - nb201.count_flops(model)
    assert skip == 0


def test_count_flops_leaves_the_model_alone() -> None:
    model = nb201.build(nb201.REFERENCES["resnet"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nb201.count_flops(model)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_every_sample_builds_and_runs() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = [set() for _ in nb201.EDGES]
    for _ in range(40):
        config = nb201.suggest(study.ask())
        for i, op in enumerate(config.ops):
            seen[i].add(op)
        model = nb201.build(config, num_classes=3)
        out = model(torch.randn(2, 3, 16, 16))
        assert out.shape == (2, 3)
        assert torch.isfinite(out).all()
    assert all(ops == set(nb201.OPS) for ops in seen)


def test_best_reference_is_the_table_optimum(rows: list[dict[str, str]]) -> None:
    column = [float(r["cifar10_test_acc_200ep"]) for r in rows]
    best = max(column)
    optimal = {r["arch_str"] for r, value in zip(rows, column) if value == best}
    assert optimal == {
        nb201.REFERENCES["best_cifar10"].arch_str,
        nb201.REFERENCES["best_cifar10_tied"].arch_str,
    }


def _same(ours: float, table: str) -> bool:
    """Equal at the table's precision (6 significant digits)."""
    return float(f"{ours:.6g}") == float(table)


def test_params_and_flops_equal_the_table(rows: list[dict[str, str]]) -> None:
    clean = [
        r
        for r in rows
        if not nb201.dead_edges(nb201.from_arch_str(r["arch_str"]))
        and not _duplicated_convs(nb201.from_arch_str(r["arch_str"]))
    ]
    assert len(clean) == 5_943
    torch.manual_seed(0)
    for row in random.Random(0).sample(clean, 50):
        config = nb201.from_arch_str(row["arch_str"])
        assert config.ops == tuple(row[f"op{i}"] for i in range(6))
        model = nb201.build(config)
        assert _same(_params(model) / 1e6, row["cifar10_params_m"]), row["arch_str"]
        assert _same(nb201.count_flops(model), row["cifar10_flops_m"]), row["arch_str"]


def test_flops_equal_the_table_even_with_dead_edges(rows: list[dict[str, str]]) -> None:
    # The table's FLOPs count every edge (they are linear in the operation counts).
    dead = [r for r in rows if nb201.dead_edges(nb201.from_arch_str(r["arch_str"]))]
    for row in random.Random(1).sample(dead, 10):
        model = nb201.build(nb201.from_arch_str(row["arch_str"]))
        assert _same(nb201.count_flops(model), row["cifar10_flops_m"]), row["arch_str"]


def test_table_params_differ_by_at_most_one_conv_in_degenerate_cells(
    rows: list[dict[str, str]],
) -> None:
    """The README's caveat, made precise: the 150 rows whose params differ are all degenerate."""
    mismatched = 0
    for row in rows:
        config = nb201.from_arch_str(row["arch_str"])
        diff = round(float(row["cifar10_params_m"]) * 1e6) - _expected_params(config)
        if abs(diff) > 5:  # the table keeps 6 significant digits
            mismatched += 1
            assert nb201.dead_edges(config) or _duplicated_convs(config), row["arch_str"]
            assert min(abs(abs(diff) - c) for c in CONV_PARAMS.values()) <= 5, row["arch_str"]
    assert mismatched == 150

"""The NAS-Bench-201 cell space, as a PyTorch model the benchmark's table describes exactly.

The sampler sees the same six categorical parameters (``edge0`` .. ``edge5``, the operation on
each edge of the cell) as the tabular benchmark in ``benchmarks/nb201_table.py``, so a search can
move from the table to real training without changing its search space.

The macro skeleton is the benchmark's (Dong and Yang, 2020): a 3x3 stem conv to 16 channels with
BN, three stages of five cells at 16, 32 and 64 channels, a residual reduction block (a ResNet
basic block with stride 2) between stages, then BN-ReLU, global average pooling and a linear
classifier. Built for 32x32 inputs and 10 classes, its FLOPs (counted by :func:`count_flops`)
equal the table's ``cifar10_flops_m`` and its parameters the table's ``cifar10_params_m``, except
for the 150 table rows whose cells have dead or duplicated edges (see :func:`dead_edges`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    import optuna


OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edge i goes from node EDGES[i][0] to node EDGES[i][1]; node 0 is the cell input and node 3 its
# output. This is the order of the official ``arch_str`` and of the table's op0..op5 columns.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
EDGE_NAMES = tuple(f"edge{i}" for i in range(len(EDGES)))
N_NODES = 4
SPACE_SIZE = len(OPS) ** len(EDGES)  # 15,625


# --- Blocks -------------------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    """The benchmark's ``nor_conv``: ReLU, then a bias-free conv, then BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def _make_op(name: str, channels: int) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"no module for operation {name!r}")


class Cell(nn.Module):
    """A four-node DAG: each node sums its incoming edges; the output is node 3.

    ``none`` edges get no module (the benchmark multiplies by zero, which has no parameters and
    no counted FLOPs). A node with only ``none`` inputs is zero, as in the benchmark.
    """

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleDict(
            {str(i): _make_op(op, channels) for i, op in enumerate(self.ops) if op != "none"}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, N_NODES):
            terms = [
                self.edges[str(i)](nodes[src])
                for i, (src, dst) in enumerate(EDGES)
                if dst == node and str(i) in self.edges
            ]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The reduction between stages: a ResNet basic block with stride 2.

    Both convs are ReLU-Conv-BN; the shortcut is a 2x2 average pool and a bias-free 1x1 conv
    (no BN), as in the benchmark's ``ResNetBasicblock``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem, three stages of cells with residual reductions between them, then the head."""

    def __init__(
        self, ops: Sequence[str], num_classes: int, channels: int, cells_per_stage: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c = channels * 2**stage
            if stage > 0:
                layers.append(ResidualReduction(c_prev, c))
            layers.extend(Cell(ops, c) for _ in range(cells_per_stage))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


# --- Config -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NB201Config:
    """The operation on each of the six edges, in the order of :data:`EDGES`."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ValueError(f"expected {len(EDGES)} operations, got {len(self.ops)}")
        unknown = set(self.ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; expected some of {OPS}")

    @property
    def arch_str(self) -> str:
        return to_arch_str(self)


def to_arch_str(config: NB201Config) -> str:
    """The official string, e.g. ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``."""
    nodes = []
    for node in range(1, N_NODES):
        parts = [f"{op}~{src}" for op, (src, dst) in zip(config.ops, EDGES) if dst == node]
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def from_arch_str(arch_str: str) -> NB201Config:
    """Parse the official string; the edges may appear in any order within a node."""
    ops: dict[tuple[int, int], str] = {}
    nodes = arch_str.split("+")
    if len(nodes) != N_NODES - 1:
        raise ValueError(f"{arch_str!r}: expected {N_NODES - 1} nodes separated by '+'")
    for dst, node in enumerate(nodes, start=1):
        for part in node.strip("|").split("|"):
            op, _, src = part.partition("~")
            if not src.isdigit() or (int(src), dst) not in EDGES:
                raise ValueError(f"{arch_str!r}: bad edge {part!r} into node {dst}")
            ops[(int(src), dst)] = op
    if len(ops) != len(EDGES):
        raise ValueError(f"{arch_str!r}: expected {len(EDGES)} edges, got {len(ops)}")
    return NB201Config(tuple(ops[edge] for edge in EDGES))


def dead_edges(config: NB201Config) -> tuple[int, ...]:
    """Indices of non-``none`` edges that lie on no path from the cell input to its output.

    Their modules exist and count in ``parameters()`` and FLOPs, but their output never reaches
    the cell output. The table's params differ from the built model's for 150 of its rows, all
    of them cells with dead edges or with two identical convolutions of the same input (for
    example ``edge0 = skip_connect`` makes node 1 a copy of node 0); the table then counts one
    convolution more or fewer. Cells with neither match exactly.
    """
    live = [(src, dst) for op, (src, dst) in zip(config.ops, EDGES) if op != "none"]
    from_input = {0}
    for src, dst in live:  # EDGES is topologically sorted by destination
        if src in from_input:
            from_input.add(dst)
    to_output = {N_NODES - 1}
    for src, dst in sorted(live, reverse=True):  # by source, last node first
        if dst in to_output:
            to_output.add(src)
    return tuple(
        i
        for i, (op, (src, dst)) in enumerate(zip(config.ops, EDGES))
        if op != "none" and not (src in from_input and dst in to_output)
    )


# --- Build --------------------------------------------------------------------------------------


def build(
    config: NB201Config, *, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5
) -> nn.Module:
    """The benchmark's network; the defaults are the ones its table was computed with."""
    return NB201Network(config.ops, num_classes, channels, cells_per_stage)


def count_flops(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> float:
    """FLOPs in the convention of the benchmark's table, in millions.

    The table's FLOPs come from NASLib's zero-cost file, whose ``flops`` measure is tensorwatch's
    copy of torchstat; this reproduces its convention exactly. Per leaf module and image:
    convolutions and linear layers count their multiply-accumulates (one per weight use, not
    two; a conv bias adds one per output, a linear bias nothing); BatchNorm counts 2 per element
    (1 without affine); ReLU 1 per element; an average pool k*k per output element; and global
    average pooling, by a quirk of that counter, (H + 1) * (W + 1) per channel instead of H * W.
    Additions between branches and ``none`` edges are free. ``torch.utils.flop_counter`` counts
    2 FLOPs per MAC for conv and linear, so we halve it and add the rest from forward hooks.
    """
    from torch.utils.flop_counter import FlopCounterMode

    extra = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal extra
        x = inputs[0]
        if isinstance(module, nn.BatchNorm2d):
            extra += x.numel() * (2 if module.affine else 1)
        elif isinstance(module, nn.ReLU):
            extra += x.numel()
        elif isinstance(module, nn.AvgPool2d):
            k = module.kernel_size
            extra += out.numel() * (k * k if isinstance(k, int) else k[0] * k[1])
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            (h, w), (oh, ow) = x.shape[-2:], out.shape[-2:]
            rows = sum(-(-(i + 1) * h // oh) - (i * h // oh) + 1 for i in range(oh))
            cols = sum(-(-(j + 1) * w // ow) - (j * w // ow) + 1 for j in range(ow))
            extra += x.shape[0] * x.shape[1] * rows * cols

    kinds = (nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    training = model.training
    model.eval()  # leave the BN statistics alone
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_size))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return (counter.get_total_flops() // 2 + extra) / input_size[0] / 1e6


# --- Suggest ------------------------------------------------------------------------------------


def suggest(trial: optuna.Trial) -> NB201Config:
    """Six categorical edges named as in the benchmark; every combination builds."""
    return NB201Config(tuple(trial.suggest_categorical(name, OPS) for name in EDGE_NAMES))


# --- References ---------------------------------------------------------------------------------

REFERENCES: dict[str, NB201Config] = {
    # The best 200-epoch CIFAR-10 test accuracy of the table (94.37%, arch_index 6111); a second
    # architecture (13714, the same cell with the last two convs swapped) ties with it.
    "best_cifar10": from_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    ),
    "best_cifar10_tied": from_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    ),
    # The NAS-Bench-201 paper's ResNet cell: a basic block, two 3x3 convs in series plus a skip.
    "resnet": from_arch_str(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    ),
}

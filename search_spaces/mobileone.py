"""MobileOne-based ConvNet search space (thesis section 7.3, Table 7.2).

Around MobileOne-S0: per stage a depth in {0, 1, 2, 5, 8, 10} and a width multiplier in
0.25..4 by steps of 0.25 (base widths 64, 128, 256, 512), non-decreasing across stages; globally
Squeeze-and-Excitation yes/no and 1 or 4 train-time conv branches. The network follows the
official ``apple/ml-mobileone`` code: a stride-2 MobileOne stem of ``min(64, int(64 * a1))``
channels (always 1 branch), stages of depthwise + pointwise MobileOne blocks whose first block has
stride 2, global average pooling and a linear head. ``use_se`` places SE as the official
``use_se`` flag does: in the last ``depth3 // 2`` blocks of stage 3 and in every block of stage 4.

A stage of depth 0 is absent, so its multiplier would not change the model: ``suggest`` only asks
for it when the stage exists (stage 1's multiplier is always asked, it sets the stem width), and
the config stores the carried-over multiplier so that equal models have equal configs. The
unfiltered space has 13,146,144 distinct members (:func:`space_size`; 20,093,184 when the
multipliers of absent stages are counted too).

The thesis filters the space to ``19 <= total depth <= 22`` and ``0.86M <= params <= 1.26M``
(inference-time parameters with a 10-class head; MobileOne-S0 has 21 blocks and 1.06M) and counts
55,870 architectures. ``suggest(trial, filtered=True)`` samples only members of the filtered set:
given the earlier answers, each depth (as an index into ``DEPTHS``) and each multiplier is asked
over the range of values that still have a feasible completion. That set is enumerated once with
the closed-form :func:`count_params` (about 2 s, then cached). 141 of these ranges (under 1%)
have a gap (the parameter bound cuts a middle value); a value in a gap is snapped to the nearest
feasible one, so a sample is never infeasible.

Size of the filtered set: 36,306 distinct models (:func:`filtered_space_size`, both branch
counts); counting the multipliers of absent stages too, as Table 7.2 reads, gives 74,894 (a
one-off enumeration with the same closed-form count). Neither
is the thesis' 55,870, and no convention we tried reproduces it (stem width fixed at 48 or 64, SE
in every block instead of the official placement, train-time instead of fused counts, 1000-class
head, multipliers not required to be non-decreasing). Branch counts do not change the fused size,
so the filter keeps both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import functools
import itertools
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from search_spaces._checks import check_branches
from search_spaces._checks import check_stages
from search_spaces.blocks import MobileOneBlock
from search_spaces.blocks import MobileOneUnit
from search_spaces.blocks import reparameterize

if TYPE_CHECKING:
    import optuna


BASE_WIDTHS = (64, 128, 256, 512)
DEPTHS = (0, 1, 2, 5, 8, 10)
WIDTH_STEP = 0.25
MAX_WIDTH = 4.0
FILTER_TOTAL_DEPTH = (19, 22)
FILTER_PARAMS = (860_000, 1_260_000)
FILTER_NUM_CLASSES = 10
SE_RATIO = 0.0625
SPACE_SIZE = 13_146_144  # distinct members, = space_size() (checked in the tests)


class MobileOne(nn.Module):
    """Stem, four stages of MobileOne units, global average pooling and a linear head."""

    def __init__(
        self,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        stem_width: int,
        se_blocks: tuple[int, ...],
        num_branches: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        # The official code never passes the branch count to the stem.
        self.stem = MobileOneBlock(3, stem_width, 3, stride=2, num_branches=1)
        stages = []
        in_channels = stem_width
        for depth, width, n_se in zip(depths, widths, se_blocks):
            units = [
                MobileOneUnit(
                    in_channels if j == 0 else width,
                    width,
                    stride=2 if j == 0 else 1,
                    num_branches=num_branches,
                    use_se=j >= depth - n_se,
                )
                for j in range(depth)
            ]
            stages.append(nn.Sequential(*units))
            if depth:
                in_channels = width
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@dataclass(frozen=True)
class MobileOneConfig:
    """One member of the space. ``width_multipliers`` of absent stages carry the previous one."""

    depths: tuple[int, int, int, int]
    width_multipliers: tuple[float, float, float, float]
    use_se: bool = False
    num_branches: int = 1

    def __post_init__(self) -> None:
        check_stages("MobileOneConfig", "depths", self.depths, kind="count")
        check_stages("MobileOneConfig", "width_multipliers", self.width_multipliers, kind="factor")
        check_branches("MobileOneConfig", self.num_branches)

    @property
    def total_depth(self) -> int:
        return sum(self.depths)


def _widths(config: MobileOneConfig) -> tuple[int, tuple[int, ...]]:
    stem = min(64, int(64 * config.width_multipliers[0]))
    return stem, tuple(int(b * a) for b, a in zip(BASE_WIDTHS, config.width_multipliers))


def _se_blocks(config: MobileOneConfig) -> tuple[int, int, int, int]:
    if not config.use_se:
        return (0, 0, 0, 0)
    return (0, 0, config.depths[2] // 2, config.depths[3])


def build(
    config: MobileOneConfig, *, num_classes: int = 1000, inference_mode: bool = False
) -> nn.Module:
    """Build the train-time model (``inference_mode=True``: already reparameterised)."""
    stem, widths = _widths(config)
    model = MobileOne(
        config.depths, widths, stem, _se_blocks(config), config.num_branches, num_classes
    )
    if inference_mode:
        model.eval()
        reparameterize(model)
    return model


def _se_params(channels: int) -> int:
    reduced = max(1, int(channels * SE_RATIO))
    return 2 * channels * reduced + reduced + channels


def _stage_params(
    in_channels: int, width: int, depth: int, n_se: int, num_branches: int, fused: bool
) -> int:
    k = num_branches
    total = 0
    for j in range(depth):
        c_in = in_channels if j == 0 else width
        if fused:
            total += 10 * c_in + c_in * width + width
        else:
            total += k * 11 * c_in + 3 * c_in + (2 * c_in if j > 0 else 0)
            total += k * (c_in * width + 2 * width) + (2 * c_in if c_in == width else 0)
        if j >= depth - n_se:
            total += _se_params(c_in) + _se_params(width)
    return total


def count_params(config: MobileOneConfig, *, num_classes: int = 1000, fused: bool = False) -> int:
    """Closed-form ``sum(p.numel() for p in build(config).parameters())``, without building.

    ``fused=True`` counts the reparameterised (inference-time) model.
    """
    stem, widths = _widths(config)
    total = (28 if fused else 34) * stem
    in_channels = stem
    for depth, width, n_se in zip(config.depths, widths, _se_blocks(config)):
        total += _stage_params(in_channels, width, depth, n_se, config.num_branches, fused)
        if depth:
            in_channels = width
    return total + in_channels * num_classes + num_classes


def _multiplier(step_index: int) -> float:
    return step_index * WIDTH_STEP


_N_WIDTHS = int(MAX_WIDTH / WIDTH_STEP)  # multipliers are _multiplier(1.._N_WIDTHS)


@functools.cache
def _filtered_tree() -> dict:
    """Prefix tree of the filtered space: per ``use_se``, nested dicts keyed by stage
    ``(depth, width index)``; a leaf is ``{}``.

    Walks stages in order and prunes with lower bounds (params only grow as stages are added,
    and the head only widens), so it visits far fewer nodes than the full product.
    """
    lo_depth, hi_depth = FILTER_TOTAL_DEPTH
    lo_params, hi_params = FILTER_PARAMS
    nc = FILTER_NUM_CLASSES

    def walk(stage: int, use_se: bool, in_ch: int, w_low: int, depth_sum: int, params: int):
        # Returns the subtree dict of feasible completions, or None.
        if stage == 4:
            total = params + in_ch * nc + nc
            ok = lo_depth <= depth_sum <= hi_depth and lo_params <= total <= hi_params
            return {} if ok else None
        if params + in_ch * nc + nc > hi_params:
            return None
        if depth_sum + DEPTHS[-1] * (4 - stage) < lo_depth:
            return None
        node: dict = {}
        for depth in DEPTHS:
            if depth_sum + depth > hi_depth:
                break
            n_se = 0
            if use_se and stage == 2:
                n_se = depth // 2
            elif use_se and stage == 3:
                n_se = depth
            if depth == 0 and stage > 0:
                sub = walk(stage + 1, use_se, in_ch, w_low, depth_sum, params)
                if sub is not None:
                    node[(0, w_low)] = sub
                continue
            for wi in range(w_low, _N_WIDTHS + 1):
                width = int(BASE_WIDTHS[stage] * _multiplier(wi))
                p = params
                ch = in_ch
                if stage == 0:
                    ch = min(64, int(64 * _multiplier(wi)))
                    p = 28 * ch
                p += _stage_params(ch, width, depth, n_se, 1, True)
                out_ch = width if depth else ch
                if p + out_ch * nc + nc > hi_params:
                    break  # wider is only bigger
                sub = walk(stage + 1, use_se, out_ch, wi, depth_sum + depth, p)
                if sub is not None:
                    node[(depth, wi)] = sub
        return node or None

    return {use_se: walk(0, use_se, 0, 1, 0, 0) for use_se in (False, True)}


def _leaves(node: dict) -> Iterator[tuple]:
    if not node:
        yield ()
        return
    for key, sub in node.items():
        for rest in _leaves(sub):
            yield (key, *rest)


def filtered_configs() -> Iterator[MobileOneConfig]:
    """Every distinct member of the thesis' filtered space (both branch counts)."""
    for use_se, node in _filtered_tree().items():
        for path in _leaves(node):
            depths = tuple(d for d, _ in path)
            mults = tuple(_multiplier(w) for _, w in path)
            for k in (1, 4):
                yield MobileOneConfig(depths, mults, use_se, k)


def _nearest(value: int, feasible: list[int]) -> int:
    """``value`` itself, or the closest feasible value (lower on ties) when it falls in a gap."""
    return min(feasible, key=lambda f: (abs(f - value), f))


def suggest(trial: optuna.Trial, *, filtered: bool = False) -> MobileOneConfig:
    """Sample a member; ``filtered=True`` keeps to the thesis' depth and parameter filter.

    Filtered, each depth is asked as an index into ``DEPTHS`` and each multiplier as a float,
    both over the range of values that still have a feasible completion; see the module
    docstring for the rare gaps inside such a range.
    """
    use_se = trial.suggest_categorical("use_se", [False, True])
    num_branches = trial.suggest_categorical("num_branches", [1, 4])
    node = _filtered_tree()[use_se] if filtered else None
    depths: list[int] = []
    mults: list[float] = []
    w_low = 1
    for stage in range(4):
        if node is None:
            depth = trial.suggest_categorical(f"depth{stage + 1}", list(DEPTHS))
        else:
            feasible = sorted({DEPTHS.index(d) for d, _ in node})
            index = trial.suggest_int(f"depth{stage + 1}_index", feasible[0], feasible[-1])
            depth = DEPTHS[_nearest(index, feasible)]
        if depth == 0 and stage > 0:
            wi = w_low
        elif node is None:
            mult = trial.suggest_float(
                f"width{stage + 1}", _multiplier(w_low), MAX_WIDTH, step=WIDTH_STEP
            )
            wi = round(mult / WIDTH_STEP)
        else:
            feasible = sorted(w for d, w in node if d == depth)
            mult = trial.suggest_float(
                f"width{stage + 1}",
                _multiplier(feasible[0]),
                _multiplier(feasible[-1]),
                step=WIDTH_STEP,
            )
            wi = _nearest(round(mult / WIDTH_STEP), feasible)
        if node is not None:
            node = node[(depth, wi)]
        depths.append(depth)
        mults.append(_multiplier(wi))
        w_low = wi
    return MobileOneConfig(tuple(depths), tuple(mults), use_se, num_branches)


def space_size(*, distinct: bool = True) -> int:
    """Number of members of the unfiltered space.

    ``distinct=False`` counts every multiplier, as a table of 4 x (depth, multiplier) reads.
    """
    n_w = _N_WIDTHS
    if not distinct:
        # Non-decreasing 4-tuples of n_w values: C(n_w + 3, 4).
        return len(DEPTHS) ** 4 * math.comb(n_w + 3, 4) * 4
    total = 0
    for depths in itertools.product(DEPTHS, repeat=4):
        present = 1 + sum(1 for d in depths[1:] if d)  # stage 1 always sets the stem
        total += math.comb(n_w + present - 1, present)
    return total * 4


def filtered_space_size() -> int:
    """Number of distinct members of the filtered space (enumerated)."""
    return 2 * sum(1 for node in _filtered_tree().values() for _ in _leaves(node))


REFERENCES: dict[str, MobileOneConfig] = {
    "mobileone_s0": MobileOneConfig((2, 8, 10, 1), (0.75, 1.0, 1.0, 2.0), False, 4),
    "mobileone_s1": MobileOneConfig((2, 8, 10, 1), (1.5, 1.5, 2.0, 2.5), False, 1),
    "mobileone_s2": MobileOneConfig((2, 8, 10, 1), (1.5, 2.0, 2.5, 4.0), False, 1),
    "mobileone_s3": MobileOneConfig((2, 8, 10, 1), (2.0, 2.5, 3.0, 4.0), False, 1),
    "mobileone_s4": MobileOneConfig((2, 8, 10, 1), (3.0, 3.5, 3.5, 4.0), True, 1),
}

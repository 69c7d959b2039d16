"""The MOAT / MobileNetV2 / ViT hybrid space of the thesis (section 7.2, Figure 7.1).

MOAT (Yang et al., 2022) has four stages; each starts with a stride-2 block. Its MOAT block, the
MBConv block of MobileNetV2/EfficientNet and the ViT block share one pattern: two mini-blocks
(a) then (b), each with its own skip connection. The thesis searches which cell fills each stage,
a cell being a pair of mini-blocks from {MBConv with SE, MBConv, self-attention, MLP, zero}, and
keeps depths and widths fixed (tiny-MOAT-0's by default). This gives 9**4 = 6,561 architectures,
about the size of NAS-Bench-201, as the thesis intends.

The thesis states the counts (7 feasible cells, 2 experimental parallel ones) but not the list, so
we derive it from its constraints, and check it against every cell the thesis names:

- (a) must be able to open a stage, i.e. take its stride and width change: MBConv (with or
  without SE) or self-attention (downsampling its pooled input as CoAtNet does).
- (b) follows at constant resolution: self-attention, MLP, or zero (nothing).
- A cell needs a channel mixer after attention, so (attention, zero) and (attention, attention)
  are excluded; a second MBConv as (b) would only repeat the (MBConv, zero) cell.

That leaves 3 * 3 - 2 = 7 cells: ``mbconv`` (MobileNetV2's inverted residual), ``mbconv_se``
(MOAT's stages 1-2), ``mbconv+mlp``, ``mbconv_se+mlp``, ``mbconv+attention`` (the MOAT block),
``mbconv_se+attention`` and ``attention+mlp`` (the ViT block). The two experimental cells run (a)
and (b) in parallel on the same input: ``mbconv|attention`` and ``mbconv_se|attention``, the
parallel versions of the MOAT block around which the space is built (our choice: the thesis does
not say which pairs it ran in parallel).

Blocks follow the official MOAT code (see ``../shared/docs/arch-facts.md`` section 4): pre-norm
MBConv with expansion 4 of the *output* width and GELU, SE with a reduction of a quarter of the
output width and SiLU, global multi-head self-attention with head size 32 and an optional 2-D
relative position bias (resized bilinearly when the feature map differs from its table, so any
input size works), and a LayerNorm head.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn
import torch.nn.functional as F

if TYPE_CHECKING:
    import optuna


MINI_BLOCKS = ("mbconv_se", "mbconv", "attention", "mlp", "zero")
# Cell name -> (mini-block a, mini-block b, whether a and b run in parallel).
CELLS: dict[str, tuple[str, str, bool]] = {
    "mbconv": ("mbconv", "zero", False),
    "mbconv_se": ("mbconv_se", "zero", False),
    "mbconv+mlp": ("mbconv", "mlp", False),
    "mbconv_se+mlp": ("mbconv_se", "mlp", False),
    "mbconv+attention": ("mbconv", "attention", False),
    "mbconv_se+attention": ("mbconv_se", "attention", False),
    "attention+mlp": ("attention", "mlp", False),
    "mbconv|attention": ("mbconv", "attention", True),
    "mbconv_se|attention": ("mbconv_se", "attention", True),
}
FEASIBLE_CELLS = tuple(name for name, (_, _, parallel) in CELLS.items() if not parallel)
PARALLEL_CELLS = tuple(name for name, (_, _, parallel) in CELLS.items() if parallel)
N_STAGES = 4
PARAM_NAMES = tuple(f"stage{i}_cell" for i in range(1, N_STAGES + 1))
SPACE_SIZE = len(CELLS) ** N_STAGES  # 6,561; 7**4 = 2,401 without the parallel cells
EXPANSION = 4
SE_RATIO = 0.25
HEAD_SIZE = 32


# --- Blocks -------------------------------------------------------------------------------------


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (MOAT's attention pre-norm and ViT's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _pool(stride: int) -> nn.Module:
    """MOAT's strided shortcut pool: 2x2, "same" padding that ignores the padded cells."""
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)


class Shortcut(nn.Sequential):
    """The cell's skip: a 2x2 average pool when strided, a 1x1 conv if the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        layers = [_pool(stride)]
        if c_in != c_out:
            layers.append(nn.Conv2d(c_in, c_out, 1))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class MBConv(nn.Sequential):
    """MOAT's pre-norm inverted bottleneck (the residual branch only; the cell adds the skip).

    BN, 1x1 expand to 4x the output width, BN, GELU, 3x3 depthwise (strided), BN, GELU, optional
    SE (reduced to a quarter of the *output* width), 1x1 projection with bias and no norm.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, se: bool) -> None:
        hidden = EXPANSION * c_out
        layers: list[nn.Module] = [
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
        ]
        if se:
            layers.append(SqueezeExcite(hidden, max(1, int(c_out * SE_RATIO))))
        layers.append(nn.Conv2d(hidden, c_out, 1))
        super().__init__(*layers)


def _num_heads(channels: int) -> int:
    """Head size 32 as in MOAT; for widths that are not multiples of 32, fewer, larger heads."""
    heads = max(1, channels // HEAD_SIZE)
    while channels % heads:
        heads -= 1
    return heads


class SelfAttention(nn.Module):
    """Pre-norm global multi-head self-attention with MOAT's 2-D relative position bias.

    The bias table covers a ``table_size`` x ``table_size`` map (the stage's resolution at the
    training size); for other maps it is resized bilinearly to (2H-1, 2W-1), as MOAT does, so the
    block runs on any input size. When strided (opening a stage), it attends over the pooled map
    and projects to the new width, as CoAtNet's downsampling transformer blocks do.
    """

    def __init__(
        self, c_in: int, c_out: int, stride: int, table_size: int, position_bias: bool
    ) -> None:
        super().__init__()
        self.heads = _num_heads(c_out)
        self.norm = _LayerNorm2d(c_in, eps=1e-5)
        self.pool = _pool(stride)
        self.q = nn.Linear(c_in, c_out)
        self.k = nn.Linear(c_in, c_out)
        self.v = nn.Linear(c_in, c_out)
        self.proj = nn.Linear(c_out, c_out)
        self.position_bias: nn.Parameter | None = None
        if position_bias:
            span = 2 * table_size - 1
            self.position_bias = nn.Parameter(torch.zeros(self.heads, span, span))
            nn.init.trunc_normal_(self.position_bias, std=0.02)

    def _bias(self, height: int, width: int) -> torch.Tensor:
        assert self.position_bias is not None
        table = self.position_bias
        size = (2 * height - 1, 2 * width - 1)
        if table.shape[-2:] != size:
            table = F.interpolate(table[None], size, mode="bilinear", align_corners=False)[0]
        rows = torch.arange(height, device=table.device)
        cols = torch.arange(width, device=table.device)
        ys, xs = torch.meshgrid(rows, cols, indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        # bias(query i, key j) = table[y_j - y_i + H - 1, x_j - x_i + W - 1]
        index = (ys[None, :] - ys[:, None] + height - 1) * size[1] + (xs[None, :] - xs[:, None])
        return table.flatten(1)[:, index + width - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.norm(x))
        batch, _, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C_in)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

        q, k, v = split(self.q(tokens)), split(self.k(tokens)), split(self.v(tokens))
        bias = None if self.position_bias is None else self._bias(height, width).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale = head_size**-0.5
        out = self.proj(out.transpose(1, 2).reshape(batch, height * width, -1))
        return out.transpose(1, 2).reshape(batch, -1, height, width)


class MLP(nn.Module):
    """ViT's pre-norm MLP: LayerNorm, Linear to 4x, GELU, Linear back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-5)
        self.fc1 = nn.Linear(channels, EXPANSION * channels)
        self.fc2 = nn.Linear(EXPANSION * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(F.gelu(self.fc1(self.norm(x.permute(0, 2, 3, 1)))))
        return y.permute(0, 3, 1, 2)


def _mini_block(
    kind: str, c_in: int, c_out: int, stride: int, table_size: int, position_bias: bool
) -> nn.Module:
    if kind in ("mbconv", "mbconv_se"):
        return MBConv(c_in, c_out, stride, se=kind == "mbconv_se")
    if kind == "attention":
        return SelfAttention(c_in, c_out, stride, table_size, position_bias)
    if kind == "mlp" and c_in == c_out and stride == 1:
        return MLP(c_out)
    raise ValueError(f"mini-block {kind!r} cannot map {c_in} -> {c_out} channels, stride {stride}")


class Cell(nn.Module):
    """Two mini-blocks with skips: x + a(x), then + b(...); or, in parallel, x + a(x) + b(x)."""

    def __init__(
        self,
        name: str,
        c_in: int,
        c_out: int,
        stride: int,
        table_size: int,
        position_bias: bool,
    ) -> None:
        super().__init__()
        a, b, self.parallel = CELLS[name]
        self.shortcut = Shortcut(c_in, c_out, stride)
        self.a = _mini_block(a, c_in, c_out, stride, table_size, position_bias)
        self.b: nn.Module | None = None
        if b != "zero":
            b_in, b_stride = (c_in, stride) if self.parallel else (c_out, 1)
            self.b = _mini_block(b, b_in, c_out, b_stride, table_size, position_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shortcut(x) + self.a(x)
        if self.b is None:
            return y
        return y + self.b(x if self.parallel else y)


class MOATNetwork(nn.Module):
    """Stem (two 3x3 convs, stride 2), four stages, then pool, LayerNorm and a linear head."""

    def __init__(self, config: MOATConfig, num_classes: int, image_size: int) -> None:
        super().__init__()
        s = config.stem_width
        # No norm or activation after the second conv: the first block's pre-norm does it.
        self.stem = nn.Sequential(
            nn.Conv2d(3, s, 3, stride=2, padding=1),
            nn.BatchNorm2d(s),
            nn.GELU(),
            nn.Conv2d(s, s, 3, padding=1),
        )
        stages = []
        c_in = s
        for i, (name, depth, width) in enumerate(zip(config.cells, config.depths, config.widths)):
            table_size = max(1, image_size // 2 ** (i + 2))  # the stage's resolution
            bias = config.relative_position_bias
            first = Cell(name, c_in, width, 2, table_size, bias)
            rest = [Cell(name, width, width, 1, table_size, bias) for _ in range(depth - 1)]
            stages.append(nn.Sequential(first, *rest))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(c_in, eps=1e-5)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.norm(x.mean((2, 3))))


# --- Config -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MOATConfig:
    """The cell of each stage; depths and widths default to tiny-MOAT-0's."""

    cells: tuple[str, ...]
    depths: tuple[int, ...] = (2, 3, 7, 2)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    stem_width: int = 32
    # MOAT's published counts include it; its "no_pe" checkpoints drop it.
    relative_position_bias: bool = True

    def __post_init__(self) -> None:
        if not len(self.cells) == len(self.depths) == len(self.widths) == N_STAGES:
            raise ValueError(f"expected {N_STAGES} cells, depths and widths")
        unknown = set(self.cells) - set(CELLS)
        if unknown:
            raise ValueError(f"unknown cells {sorted(unknown)}; expected some of {list(CELLS)}")
        if min(self.depths) < 1:
            raise ValueError("every stage needs a block: it is where the resolution halves")


# --- Build --------------------------------------------------------------------------------------


def build(config: MOATConfig, *, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """The network; ``image_size`` only sets the relative-position tables' size.

    MOAT sizes them for training at 224 (stage 3: 14, stage 4: 7). Any input size runs.
    """
    return MOATNetwork(config, num_classes, image_size)


# --- Suggest ------------------------------------------------------------------------------------


def suggest(
    trial: optuna.Trial, *, base: MOATConfig | None = None, include_parallel: bool = True
) -> MOATConfig:
    """One categorical cell per stage; every combination is feasible by construction.

    ``base`` gives the depths and widths to keep (tiny-MOAT-0's by default, as in the thesis;
    ``REFERENCES["moat_0"]`` for its larger runs). ``include_parallel=False`` leaves out the two
    experimental parallel cells.
    """
    choices = tuple(CELLS) if include_parallel else FEASIBLE_CELLS
    cells = tuple(trial.suggest_categorical(name, choices) for name in PARAM_NAMES)
    return MOATConfig(cells) if base is None else replace(base, cells=cells)


# --- References ---------------------------------------------------------------------------------

_MOAT_CELLS = ("mbconv_se", "mbconv_se", "mbconv+attention", "mbconv+attention")
# Thesis 7.2.2, found after about 70 evaluations on Imagewoof: (MBConv no SE) | (MOAT block) |
# (MBConv & SE + MLP) | (MOAT block & SE).
_SEARCHED_CELLS = ("mbconv", "mbconv+attention", "mbconv_se+mlp", "mbconv_se+attention")
_MOAT_0 = {"widths": (96, 192, 384, 768), "stem_width": 64}

# With 1000 classes tiny-MOAT-0 has 3,355,348 parameters (3,332,232 without the relative
# position tables; deeplab2 publishes 3.4M / 3.3M) and 3,100,918 with a 10-class head. The
# thesis's "around 2.7M" for its baseline matches neither; the published models are the check.
REFERENCES: dict[str, MOATConfig] = {
    "tiny_moat_0": MOATConfig(_MOAT_CELLS),
    "tiny_moat_1": MOATConfig(_MOAT_CELLS, widths=(40, 80, 160, 320), stem_width=40),
    "tiny_moat_2": MOATConfig(_MOAT_CELLS, widths=(56, 112, 224, 448), stem_width=56),
    "moat_0": MOATConfig(_MOAT_CELLS, **_MOAT_0),
    "tiny_moat_0_searched": MOATConfig(_SEARCHED_CELLS),
    "moat_0_searched": MOATConfig(_SEARCHED_CELLS, **_MOAT_0),
}

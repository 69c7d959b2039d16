"""SwiftFormer and MobileOne hybrid ConvNet-ViT search space (thesis section 7.4, Table 7.4).

The space keeps SwiftFormer-XS's skeleton (depths 3, 3, 6, 4; widths 48, 56, 112, 220; its stem,
downsampling and head) and sets, per stage, the conv block type in {conv-enc, mo, mo-se} and how
many of the stage's last blocks are attention blocks in {none, last-1, last-2, all}: 12 choices
per stage, 12^4 = 20,736 architectures. An attention block is SwiftFormer's encoder whose local
representation (the "mini-convolution block" before the attention) has the stage's conv type.
SwiftFormer-XS is (conv-enc, last-1) everywhere; the MobileOne-like member is (mo, none)
everywhere: MobileOne units (k train-time branches, fusable with
:func:`search_spaces.reparameterize`) in the SwiftFormer-XS skeleton.

The SwiftFormer blocks follow the official ``Amshaker/SwiftFormer`` code, so SwiftFormer-XS and
-S have the published parameter counts (3,475,360 and 6,092,128 with 1000 classes, distillation
head included). The distillation head is kept (``distillation=True``) because the published
counts include it; unlike the official model, ``forward`` always returns the average of both
heads (the official eval output) and :meth:`SwiftFormer.forward_heads` returns both for
distillation training.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
import torch.nn.functional as F

from search_spaces._checks import check_branches
from search_spaces._checks import check_choices
from search_spaces._checks import check_stages
from search_spaces.blocks import MobileOneUnit

if TYPE_CHECKING:
    import optuna


CONV_TYPES = ("conv-enc", "mo", "mo-se")
ATTENTION_CHOICES = ("none", "last-1", "last-2", "all")
SPACE_SIZE = (len(CONV_TYPES) * len(ATTENTION_CHOICES)) ** 4  # 12^4 = 20,736

AttentionFactory = Callable[[int], nn.Module]


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (channels-first maps)."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ConvEncoder(nn.Module):
    """SwiftFormer's conv block: DW 3x3, BN, 1x1 expand, GELU, 1x1 project, layer scale, residual.

    With ``hidden == channels`` and no scale init change it is also the local representation of
    the SwiftFormer encoder.
    """

    def __init__(self, channels: int, hidden: int, layer_scale_init: float = 1.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.BatchNorm2d(channels)
        self.pwconv1 = nn.Conv2d(channels, hidden, 1)
        self.pwconv2 = nn.Conv2d(hidden, channels, 1)
        self.layer_scale = LayerScale(channels, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.layer_scale(y)


class EfficientAdditiveAttention(nn.Module):
    """SwiftFormer's Efficient Additive Attention, step for step as in the official code.

    Q and K are L2-normalised per token, the token scores are L2-normalised over the tokens
    (not softmax), and the normalised query is added back before the final projection.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.w_g = nn.Parameter(torch.randn(dim, 1))
        self.scale = dim**-0.5
        self.proj = nn.Linear(dim, dim)
        self.final = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, D)
        query = F.normalize(self.to_query(x), dim=-1)
        key = F.normalize(self.to_key(x), dim=-1)
        scores = F.normalize(query @ self.w_g * self.scale, dim=1)  # (B, N, 1)
        global_query = torch.sum(scores * query, dim=1, keepdim=True)  # (B, 1, D)
        return self.final(self.proj(global_query * key) + query)


class Mlp(nn.Module):
    """The encoder's MLP: BN (its only pre-norm), 1x1 expand, GELU, 1x1 project."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm1(x))))


class SwiftFormerEncoder(nn.Module):
    """Local representation, then ``x + g1 * attention(tokens)``, then ``x + g2 * MLP(x)``."""

    def __init__(
        self, channels: int, local: nn.Module, attention: nn.Module, mlp_ratio: int = 4
    ) -> None:
        super().__init__()
        self.local_representation = local
        self.attn = attention
        self.linear = Mlp(channels, channels * mlp_ratio)
        self.layer_scale_1 = LayerScale(channels, 1e-5)
        self.layer_scale_2 = LayerScale(channels, 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        attended = self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)
        x = x + self.layer_scale_1(attended)
        return x + self.layer_scale_2(self.linear(x))


def conv_block(
    conv_type: str, channels: int, *, mlp_ratio: int, num_branches: int, local: bool
) -> nn.Module:
    """A conv block of the given type; ``local=True`` gives the attention block's mini version."""
    if conv_type == "conv-enc":
        if local:
            return ConvEncoder(channels, channels, 1.0)
        return ConvEncoder(channels, channels * mlp_ratio, 1.0)
    if conv_type in ("mo", "mo-se"):
        return MobileOneUnit(
            channels, channels, num_branches=num_branches, use_se=conv_type == "mo-se"
        )
    raise ValueError(f"unknown conv type {conv_type!r}")


def conv_bn_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """SwiftFormer's stride-4 stem: two (3x3 stride-2 conv with bias, BN, ReLU)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels // 2, 3, stride=2, padding=1),
        nn.BatchNorm2d(out_channels // 2),
        nn.ReLU(),
        nn.Conv2d(out_channels // 2, out_channels, 3, stride=2, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SwiftFormer(nn.Module):
    """The SwiftFormer macro-architecture with per-stage conv types and attention-block counts.

    ``attention`` builds the token mixer of one attention block from its width, so that other
    attention designs (chapter 8) reuse this skeleton.
    """

    def __init__(
        self,
        depths: Sequence[int],
        widths: Sequence[int],
        conv_types: Sequence[str],
        attention_blocks: Sequence[int],
        *,
        num_classes: int = 1000,
        num_branches: int = 4,
        mlp_ratio: int = 4,
        distillation: bool = True,
        attention: AttentionFactory = EfficientAdditiveAttention,
    ) -> None:
        super().__init__()
        self.patch_embed = conv_bn_stem(3, widths[0])
        stages = []
        for i, (depth, width, conv_type, n_attn) in enumerate(
            zip(depths, widths, conv_types, attention_blocks)
        ):
            blocks: list[nn.Module] = []
            if i > 0:  # "Embedding": 3x3 stride-2 conv with bias, BN, no activation
                blocks.append(
                    nn.Sequential(
                        nn.Conv2d(widths[i - 1], width, 3, stride=2, padding=1),
                        nn.BatchNorm2d(width),
                    )
                )
            for j in range(depth):
                kwargs = dict(mlp_ratio=mlp_ratio, num_branches=num_branches)
                if j < depth - n_attn:
                    blocks.append(conv_block(conv_type, width, local=False, **kwargs))
                else:
                    local = conv_block(conv_type, width, local=True, **kwargs)
                    blocks.append(SwiftFormerEncoder(width, local, attention(width), mlp_ratio))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        self.dist_head = nn.Linear(widths[-1], num_classes) if distillation else None

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both heads' logits (the second is None without distillation)."""
        x = self.patch_embed(x)
        for stage in self.stages:
            x = stage(x)
        x = self.norm(x).mean((2, 3))
        return self.head(x), self.dist_head(x) if self.dist_head is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, dist = self.forward_heads(x)
        return cls if dist is None else (cls + dist) / 2


@dataclass(frozen=True)
class SwiftFormerConfig:
    """Per-stage conv type and attention-block choice, around a fixed depth/width skeleton."""

    conv_types: tuple[str, str, str, str]
    attention: tuple[str, str, str, str]
    depths: tuple[int, int, int, int] = (3, 3, 6, 4)
    widths: tuple[int, int, int, int] = (48, 56, 112, 220)
    num_branches: int = 4

    def __post_init__(self) -> None:
        owner = "SwiftFormerConfig"
        check_choices(owner, "conv_types", self.conv_types, CONV_TYPES)
        check_choices(owner, "attention", self.attention, ATTENTION_CHOICES)
        check_stages(owner, "depths", self.depths, kind="size")
        check_stages(owner, "widths", self.widths, kind="size")
        check_branches(owner, self.num_branches)

    @property
    def attention_blocks(self) -> tuple[int, ...]:
        """Number of attention blocks at the end of each stage."""
        counts = {"none": 0, "last-1": 1, "last-2": 2}
        return tuple(
            depth if choice == "all" else min(depth, counts[choice])
            for depth, choice in zip(self.depths, self.attention)
        )


def build(
    config: SwiftFormerConfig,
    *,
    num_classes: int = 1000,
    distillation: bool = True,
    attention: AttentionFactory = EfficientAdditiveAttention,
) -> SwiftFormer:
    """Build the model; ``attention`` swaps the token mixer (default: SwiftFormer's EAA)."""
    return SwiftFormer(
        config.depths,
        config.widths,
        config.conv_types,
        config.attention_blocks,
        num_classes=num_classes,
        num_branches=config.num_branches,
        distillation=distillation,
        attention=attention,
    )


def suggest(trial: optuna.Trial, *, num_branches: int = 4) -> SwiftFormerConfig:
    """Per stage a conv type and an attention choice; ``num_branches`` is fixed per search.

    The thesis ran one search with 4 and one with 1 MobileOne branches, so the branch count is a
    setting of the space, not a variable.
    """
    conv_types = []
    attention = []
    for i in range(1, 5):
        conv_types.append(trial.suggest_categorical(f"stage{i}_conv", list(CONV_TYPES)))
        attention.append(trial.suggest_categorical(f"stage{i}_attention", list(ATTENTION_CHOICES)))
    return SwiftFormerConfig(tuple(conv_types), tuple(attention), num_branches=num_branches)


_XS = {"depths": (3, 3, 6, 4), "widths": (48, 56, 112, 220)}
_S = {"depths": (3, 3, 9, 6), "widths": (48, 64, 168, 224)}

REFERENCES: dict[str, SwiftFormerConfig] = {
    "swiftformer_xs": SwiftFormerConfig(("conv-enc",) * 4, ("last-1",) * 4, **_XS),
    "swiftformer_s": SwiftFormerConfig(("conv-enc",) * 4, ("last-1",) * 4, **_S),
    "mobileone_like_xs": SwiftFormerConfig(("mo",) * 4, ("none",) * 4, **_XS),
}

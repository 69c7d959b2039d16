"""Blocks shared by the search spaces: conv-BN branches, squeeze-excitation, MobileOne blocks.

MobileOne blocks are over-parameterised for training (several conv-BN branches, a 1x1 scale
branch and a BN-only skip branch) and fuse into one convolution for inference. The fusion
follows the official ``apple/ml-mobileone`` code, so that the parameter counts of the train-time
and fused models match the published ones.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def count_params(model: nn.Module) -> int:
    """All ``parameters()`` (the timm / torchvision convention; BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """A bias-free convolution followed by BatchNorm: one fusable branch."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    )


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation as in MobileOne: reduce to ``int(C * ratio)`` with 1x1 convs."""

    def __init__(self, channels: int, ratio: float = 0.0625) -> None:
        super().__init__()
        reduced = max(1, int(channels * ratio))
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


def _fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the preceding bias-free kernel."""
    std = (bn.running_var + bn.eps).sqrt()
    t = (bn.weight / std).reshape(-1, 1, 1, 1)
    return kernel * t, bn.bias - bn.running_mean * bn.weight / std


class MobileOneBlock(nn.Module):
    """One MobileOne block: ``k`` conv-BN branches + 1x1 scale branch + BN skip, then SE, ReLU.

    The scale branch exists only for kernels larger than 1x1 and the skip branch only when the
    block keeps shape (same channels, stride 1), exactly as in the official code. Call
    :meth:`reparameterize` (BN in eval mode) to fuse all branches into one biased convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        num_branches: int = 1,
        use_se: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.branches = nn.ModuleList(
            conv_bn(in_channels, out_channels, kernel_size, stride, groups)
            for _ in range(num_branches)
        )
        self.scale = (
            conv_bn(in_channels, out_channels, 1, stride, groups) if kernel_size > 1 else None
        )
        self.skip = (
            nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        )
        self.se: nn.Module = SqueezeExcite(out_channels) if use_se else nn.Identity()
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(self.se(self.fused(x)))
        out = self.skip(x) if self.skip is not None else 0
        if self.scale is not None:
            out = out + self.scale(x)
        for branch in self.branches:
            out = out + branch(x)
        return F.relu(self.se(out))

    def _identity_kernel(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        per_group = self.in_channels // self.groups
        kernel = torch.zeros(
            self.in_channels,
            per_group,
            self.kernel_size,
            self.kernel_size,
            device=device,
            dtype=dtype,
        )
        center = self.kernel_size // 2
        idx = torch.arange(self.in_channels, device=device)
        kernel[idx, idx % per_group, center, center] = 1.0
        return kernel

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one equivalent convolution (uses BN running statistics)."""
        if self.fused is not None:
            return
        ref = self.branches[0][0].weight if len(self.branches) else self.scale[0].weight
        k = self.kernel_size
        weight = torch.zeros(
            self.out_channels,
            self.in_channels // self.groups,
            k,
            k,
            device=ref.device,
            dtype=ref.dtype,
        )
        bias = torch.zeros(self.out_channels, device=ref.device, dtype=ref.dtype)
        for branch in self.branches:
            w, b = _fuse_bn(branch[0].weight, branch[1])
            weight += w
            bias += b
        if self.scale is not None:
            w, b = _fuse_bn(self.scale[0].weight, self.scale[1])
            weight += F.pad(w, [k // 2] * 4)
            bias += b
        if self.skip is not None:
            w, b = _fuse_bn(self._identity_kernel(ref.device, ref.dtype), self.skip)
            weight += w
            bias += b
        conv = nn.utils.skip_init(  # the weights are overwritten just below
            nn.Conv2d,
            self.in_channels,
            self.out_channels,
            k,
            stride=self.stride,
            padding=k // 2,
            groups=self.groups,
            bias=True,
            device=ref.device,
            dtype=ref.dtype,
        )
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.fused = conv
        self.branches = nn.ModuleList()
        self.scale = None
        self.skip = None


class MobileOneUnit(nn.Sequential):
    """The MobileOne "block" of a stage: depthwise 3x3 MobileOne block, then pointwise 1x1 one.

    The stride sits on the depthwise part; SE, when used, is in both parts (as in MobileOne-S4).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        num_branches: int = 1,
        use_se: bool = False,
    ) -> None:
        super().__init__(
            MobileOneBlock(
                in_channels,
                in_channels,
                3,
                stride=stride,
                groups=in_channels,
                num_branches=num_branches,
                use_se=use_se,
            ),
            MobileOneBlock(in_channels, out_channels, 1, num_branches=num_branches, use_se=use_se),
        )


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse every MobileOne-style block of ``model`` in place and return it.

    Any module with a ``reparameterize()`` method is fused, so blocks defined elsewhere with the
    same protocol are included. Put the model in eval mode first: fusion reads BN statistics.
    """
    for module in list(model.modules()):
        fuse = getattr(module, "reparameterize", None)
        if callable(fuse):
            fuse()
    return model

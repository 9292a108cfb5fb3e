"""Feature pyramids: FPN (top-down) and PAN (top-down then bottom-up, PANet), with C2f fusion blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.models.layers import C2f, ConvBNAct
from visionkit.registry import register


class FPNNeck(nn.Module):
    """Top-down path: upsample the coarser map, concatenate, fuse with C2f. Output channels = ``channels``."""

    def __init__(self, in_channels, in_strides, channels: list[int] | None = None, depth: int = 1):
        super().__init__()
        in_channels = list(in_channels)
        self.channels = tuple(channels or in_channels)
        self.strides = tuple(in_strides)
        self.lateral = nn.ModuleList(
            ConvBNAct(c, o, 1) if c != o else nn.Identity() for c, o in zip(in_channels, self.channels)
        )
        self.fuse = nn.ModuleList(
            C2f(self.channels[i] + self.channels[i + 1], self.channels[i], depth) for i in range(len(self.channels) - 1)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = [lat(f) for lat, f in zip(self.lateral, features)]
        out = [feats[-1]]
        for i in range(len(feats) - 2, -1, -1):
            up = F.interpolate(out[0], size=feats[i].shape[-2:], mode="nearest")
            out.insert(0, self.fuse[i](torch.cat([up, feats[i]], 1)))
        return out


class PANNeck(FPNNeck):
    """FPN, then a bottom-up path: stride-2 conv of the finer output, concatenate, fuse with C2f."""

    def __init__(self, in_channels, in_strides, channels: list[int] | None = None, depth: int = 1):
        super().__init__(in_channels, in_strides, channels, depth)
        c = self.channels
        self.down = nn.ModuleList(ConvBNAct(c[i], c[i], 3, 2) for i in range(len(c) - 1))
        self.fuse_up = nn.ModuleList(C2f(c[i] + c[i + 1], c[i + 1], depth) for i in range(len(c) - 1))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        td = super().forward(features)
        out = [td[0]]
        for i in range(len(td) - 1):
            out.append(self.fuse_up[i](torch.cat([self.down[i](out[-1]), td[i + 1]], 1)))
        return out


@register("neck", "fpn")
def fpn(*, in_channels, in_strides, channels: list[int] | None = None, depth: int = 1) -> FPNNeck:
    """Top-down feature pyramid (C2f fusion)."""
    return FPNNeck(in_channels, in_strides, channels, depth)


@register("neck", "pan")
def pan(*, in_channels, in_strides, channels: list[int] | None = None, depth: int = 1) -> PANNeck:
    """Top-down + bottom-up path aggregation (C2f fusion)."""
    return PANNeck(in_channels, in_strides, channels, depth)

"""Dense prediction head after DPT / MiDaS (Ranftl et al., 2020 and 2021): reassemble the backbone's multi-scale
features (a 1×1 projection to one width), fuse them top-down with RefineNet-style residual fusion blocks, and
predict one channel at the input resolution. The output is raw: the depth task reads it as inverse depth (relative
mode) or log-depth (metric mode). Works on any backbone with one or more feature maps (a ViT through its
reassemble adapter, as DPT does)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.registry import register


class ResidualConvUnit(nn.Module):
    """ReLU → 3×3 conv → ReLU → 3×3 conv, plus the input (RefineNet's RCU)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Add the (refined) skip feature to the deeper path, refine, and hand the result on."""

    def __init__(self, channels: int):
        super().__init__()
        self.skip = ResidualConvUnit(channels)
        self.refine = ResidualConvUnit(channels)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, deeper: torch.Tensor | None, skip: torch.Tensor) -> torch.Tensor:
        x = self.skip(skip)
        if deeper is not None:
            x = x + F.interpolate(deeper, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.refine(x))


class DPTHead(nn.Module):
    """One channel (N, 1, H, W) at the input resolution (the shallowest stride × its map size)."""

    def __init__(
        self,
        in_channels,
        in_strides,
        num_classes: int = 1,
        features: int = 64,
        output: str = "inverse_depth",
        calibration: list[float] | None = None,
    ):
        super().__init__()
        # what the raw output means, kept with the network so a checkpoint or export never guesses: 'inverse_depth'
        # (relative, up to scale and shift) or 'log_depth' (metric); ``calibration`` = (scale, shift) mapping a
        # relative output to inverse metres, fitted by `visionkit depth calibrate`
        self.output_kind, self.calibration = output, list(calibration) if calibration is not None else None
        self.out_stride = in_strides[0]
        self.project = nn.ModuleList(nn.Conv2d(c, features, 1, bias=False) for c in in_channels)
        self.fuse = nn.ModuleList(FusionBlock(features) for _ in in_channels)
        self.output = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, num_classes, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = None
        for proj, fuse, f in zip(reversed(self.project), reversed(self.fuse), reversed(features)):
            x = fuse(x, proj(f))
        if self.out_stride != 1:
            x = F.interpolate(x, scale_factor=self.out_stride, mode="bilinear", align_corners=False)
        return self.output(x)


@register("head", "dpt")
def dpt(
    *,
    in_channels,
    in_strides,
    num_classes: int = 1,
    features: int = 64,
    output: str = "inverse_depth",
    calibration: list[float] | None = None,
) -> DPTHead:
    """DPT/MiDaS-style reassemble + fusion head: one channel (depth) at the input resolution."""
    return DPTHead(in_channels, in_strides, num_classes, features, output, calibration)

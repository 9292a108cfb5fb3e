"""Dense prediction head after DPT / MiDaS (Ranftl et al., 2020 and 2021): reassemble the backbone's multi-scale
features (a 1×1 projection to one width), fuse them top-down with RefineNet-style residual fusion blocks, and
predict one channel at the input resolution. The output is raw: the depth task reads it as inverse depth (relative
mode) or log-depth (metric mode). Works on any backbone with one or more feature maps (a ViT through its
reassemble adapter, as DPT does)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError
from visionkit.registry import register

LAYOUTS = ("dpt", "v1")


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


def fusion_width(in_channels) -> int:
    """The fusion width that follows the encoder: its finest feature map's channels, rounded up to a multiple of 16,
    within 32..256 (DPT fuses ResNet-50's 256 at 256; a nano encoder's 32 at 32). The fusion convs run at the
    finest stride, so a width far above the encoder's makes the decoder most of the model's compute."""
    return int(min(256, max(32, -(-int(in_channels[0]) // 16) * 16)))


def full_resolution_width(features: int) -> int:
    """The width of the one conv at full resolution: DPT's (half the fusion width, at most 32) from a fusion width
    of 64 up, and a quarter of it (at least 8) below. That conv runs on every input pixel: for depth-n (fusion 32)
    16 channels held half of a frozen-backbone training step and 8 gave the same delta1 on rooms, while halving
    midas-small's 32 cost 0.014 delta1 on one seed (docs/transfer.md)."""
    features = int(features)
    return min(32, features // 2) if features >= 64 else max(8, features // 4)


class DPTHead(nn.Module):
    """One channel (N, 1, H, W) at the input resolution (the shallowest stride × its map size)."""

    def __init__(
        self,
        in_channels,
        in_strides,
        num_classes: int = 1,
        features: int | None = None,
        output: str = "inverse_depth",
        calibration: list[float] | None = None,
        layout: str = "dpt",
        output_width: int | None = None,
    ):
        super().__init__()
        features = fusion_width(in_channels) if features is None else int(features)
        # what the raw output means, kept with the network so a checkpoint or export never guesses: 'inverse_depth'
        # (relative, up to scale and shift) or 'log_depth' (metric); ``calibration`` = (scale, shift) mapping a
        # relative output to inverse metres, fitted by `visionkit depth calibrate`
        self.output_kind, self.calibration = output, list(calibration) if calibration is not None else None
        self.out_stride = in_strides[0]
        if layout not in LAYOUTS:
            raise UsageError(f"dpt head: layout={layout!r} is not one of {', '.join(LAYOUTS)}")
        if output_width is not None and (layout != "dpt" or int(output_width) < 1):
            raise UsageError(f"dpt head: output_width={output_width!r} needs layout 'dpt' and a width of at least 1")
        self.layout = layout
        self.project = nn.ModuleList(nn.Conv2d(c, features, 1, bias=False) for c in in_channels)
        self.fuse = nn.ModuleList(FusionBlock(features) for _ in in_channels)
        if layout == "dpt":
            # DPT's order: halve the width at the fused resolution, then upsample, then one conv at full resolution
            # (upsampling the full width first, as 'v1' did, spent most of the model's compute there)
            width = features // 2
            last = full_resolution_width(features) if output_width is None else int(output_width)
            self.narrow = nn.Conv2d(features, width, 3, padding=1)
            self.output = nn.Sequential(
                nn.Conv2d(width, last, 3, padding=1), nn.ReLU(), nn.Conv2d(last, num_classes, 1)
            )
        else:
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
        if self.layout == "dpt":
            x = self.narrow(x)
        if self.out_stride != 1:
            x = F.interpolate(x, scale_factor=self.out_stride, mode="bilinear", align_corners=False)
        return self.output(x)


@register("head", "dpt")
def dpt(
    *,
    in_channels,
    in_strides,
    num_classes: int = 1,
    features: int | None = None,
    output: str = "inverse_depth",
    calibration: list[float] | None = None,
    layout: str = "dpt",
    output_width: int | None = None,
) -> DPTHead:
    """DPT/MiDaS-style reassemble + fusion head: one channel (depth) at the input resolution. ``features``: the
    fusion width (default: the encoder's finest feature width, see ``fusion_width``); ``layout='v1'``: the output
    stage of checkpoints written before 'dpt' became the default; ``output_width``: the channels of the one conv at
    full resolution (default ``full_resolution_width``)."""
    return DPTHead(in_channels, in_strides, num_classes, features, output, calibration, layout, output_width)


def upgrade_config(spec: dict, state_dict: dict, prefix: str) -> dict:
    """A head config from a checkpoint written before ``layout`` existed describes the 'v1' output stage, one
    written before ``features`` followed the encoder used 64, and the full-resolution conv's width is the file's."""
    if "layout" not in spec and f"{prefix}output.4.weight" in state_dict:
        spec["layout"] = "v1"
    projection = state_dict.get(f"{prefix}project.0.weight")
    if spec.get("features") is None and isinstance(projection, torch.Tensor):
        spec["features"] = int(projection.shape[0])
    last = state_dict.get(f"{prefix}output.0.weight")
    if spec.get("layout", "dpt") == "dpt" and spec.get("output_width") is None and isinstance(last, torch.Tensor):
        spec["output_width"] = int(last.shape[0])
    return spec


dpt.upgrade_config = upgrade_config

"""U-Net decoder (Ronneberger et al., 2015) on any backbone: built from the backbone's declared channels and strides.

From the deepest feature map up, each level is upsampled to the next shallower one's size (bilinear, or a learned
transposed convolution), concatenated with that skip connection and fused by two 3×3 conv blocks. A 1×1 conv gives
class logits at the shallowest stride, and bilinear upsampling brings them to the input resolution (cheap: no
full-resolution convolutions, the way DeepLab and SegFormer finish). A single-scale backbone (one feature map) has no
skip connections: the head is then a plain FCN on that map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError
from visionkit.models.layers import ConvBNAct
from visionkit.registry import register

UPSAMPLE_MODES = ("nearest", "bilinear", "transpose")


class UNetHead(nn.Module):
    """Logits (N, num_classes, H, W) at the input resolution (H, W = the shallowest stride × its map size)."""

    def __init__(self, in_channels, in_strides, num_classes: int, channels=None, upsample: str = "bilinear"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise UsageError(f"unet head: upsample={upsample!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
        in_channels, in_strides = list(in_channels), list(in_strides)
        channels = list(channels) if channels is not None else list(in_channels)
        if len(channels) != len(in_channels):
            raise UsageError(
                f"unet head: channels={channels} needs one entry per feature level "
                f"({len(in_channels)}: strides {in_strides})"
            )
        self.upsample, self.out_stride = upsample, in_strides[0]
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        c = in_channels[-1]
        for i in reversed(range(len(in_channels) - 1)):
            if upsample == "transpose":
                factor = in_strides[i + 1] / in_strides[i]
                if factor != int(factor):
                    raise UsageError(f"unet head: upsample=transpose needs whole stride ratios; strides {in_strides}")
                self.ups.append(nn.ConvTranspose2d(c, c, int(factor), int(factor)))
            else:
                self.ups.append(nn.Identity())
            self.blocks.append(
                nn.Sequential(ConvBNAct(c + in_channels[i], channels[i]), ConvBNAct(channels[i], channels[i]))
            )
            c = channels[i]
        self.fuse = ConvBNAct(c, c) if len(in_channels) == 1 else nn.Identity()
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(features[:-1])):
            x = up(x)
            if x.shape[-2:] != skip.shape[-2:]:
                x = (
                    F.interpolate(x, size=skip.shape[-2:], mode="nearest")
                    if self.upsample == "nearest"
                    else F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                )
            x = block(torch.cat([x, skip], 1))
        logits = self.classifier(self.fuse(x))
        if self.out_stride != 1:
            logits = F.interpolate(logits, scale_factor=self.out_stride, mode="bilinear", align_corners=False)
        return logits


@register("head", "unet")
def unet(*, in_channels, in_strides, num_classes: int, channels=None, upsample: str = "bilinear") -> UNetHead:
    """U-Net decoder: skip connections at every backbone stride, logits at the input resolution."""
    return UNetHead(in_channels, in_strides, num_classes, channels, upsample)

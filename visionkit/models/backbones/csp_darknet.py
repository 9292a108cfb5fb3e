"""CSPDarknet with C2f blocks and SPPF (the YOLOv8-style backbone), scaled by width and depth multipliers."""

from __future__ import annotations

import math

from torch import nn

from visionkit.models.backbones.base import StagedBackbone
from visionkit.models.layers import SPPF, C2f, ConvBNAct
from visionkit.registry import register

# width, depth; "p" (pico) is the fastest: three quarters of n's width, about 0.6x its multiply-adds
SCALES = {"p": (0.1875, 0.33), "n": (0.25, 0.33), "s": (0.5, 0.33), "m": (0.75, 0.67)}
BASE_CHANNELS = (64, 128, 256, 512, 1024)
BASE_DEPTHS = (3, 6, 6, 3)


class CSPDarknet(StagedBackbone):
    def __init__(
        self, out_strides=None, in_channels: int = 3, width: float = 0.25, depth: float = 0.33, max_channels: int = 1024
    ):
        ch = [min(max(16, int(math.ceil(c * width / 8) * 8)), max_channels) for c in BASE_CHANNELS]
        n = [max(1, round(d * depth)) for d in BASE_DEPTHS]
        stages = [ConvBNAct(in_channels, ch[0], 3, 2)]  # stride 2
        for i in range(4):  # strides 4, 8, 16, 32
            layers = [ConvBNAct(ch[i], ch[i + 1], 3, 2), C2f(ch[i + 1], ch[i + 1], n[i], shortcut=True)]
            if i == 3:
                layers.append(SPPF(ch[4], ch[4]))
            stages.append(nn.Sequential(*layers))
        super().__init__(stages, [2, 4, 8, 16, 32], ch, out_strides or (8, 16, 32), in_channels, "csp_darknet")


@register("backbone", "csp_darknet")
def csp_darknet(
    *, out_strides=None, in_channels: int = 3, scale: str | None = None, width: float = 0.25, depth: float = 0.33
) -> CSPDarknet:
    """CSPDarknet (C2f + SPPF); scale p/n/s/m or width/depth multipliers (strides 2-32, default 8, 16, 32)."""
    if scale is not None:
        if scale not in SCALES:
            raise ValueError(f"csp_darknet scale must be one of {', '.join(SCALES)}, got {scale!r}")
        width, depth = SCALES[scale]
    return CSPDarknet(out_strides, in_channels, width, depth)

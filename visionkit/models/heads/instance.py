"""Instance-segmentation head: the YOLO detection head plus per-anchor mask coefficients and a prototype branch
(YOLACT, Bolya et al. 2019): a small fully-convolutional branch on the finest level makes ``num_masks``
prototype masks at twice that level's resolution, and each detection's mask is the sigmoid of its coefficients
times the prototypes, cropped to its box. Cheap at inference: the masks of the kept objects only are assembled."""

from __future__ import annotations

import torch
from torch import nn

from visionkit.models.heads.detect import DetectHead
from visionkit.models.layers import ConvBNAct
from visionkit.registry import register


class Prototypes(nn.Module):
    """Finest-level features → ``num_masks`` prototype masks at twice their resolution."""

    def __init__(self, c_in: int, c_mid: int, num_masks: int):
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_mid, 3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = ConvBNAct(c_mid, c_mid, 3)
        self.conv3 = ConvBNAct(c_mid, num_masks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.up(self.conv1(x))))


class InstanceHead(DetectHead):
    """Outputs ``(levels, prototypes)``: per level (B, 4·reg_max + num_classes + num_masks, H, W) — the detection
    head's layout followed by mask coefficients — and prototypes (B, num_masks, 2·H0, 2·W0) for the finest level
    H0×W0 (stride ``strides[0] / 2``)."""

    def __init__(
        self,
        in_channels,
        in_strides,
        num_classes: int,
        reg_max: int = 16,
        num_masks: int = 32,
        proto_channels: int | None = None,
    ):
        super().__init__(in_channels, in_strides, num_classes, reg_max)
        self.num_masks = num_masks
        c0 = in_channels[0]
        c_coef = max(c0 // 4, num_masks)
        self.coef = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_coef, 3), ConvBNAct(c_coef, c_coef, 3), nn.Conv2d(c_coef, num_masks, 1))
            for c in in_channels
        )
        self.proto = Prototypes(c0, proto_channels or max(64, c0), num_masks)
        self.proto_stride = self.strides[0] / 2

    def forward(self, features: list[torch.Tensor]):
        levels = [torch.cat([b(f), c(f), m(f)], 1) for b, c, m, f in zip(self.box, self.cls, self.coef, features)]
        return levels, self.proto(features[0])

    def split(self, outputs) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(the detection head's per-level outputs, coefficients (B, N, num_masks), prototypes)."""
        levels, protos = outputs
        det = [o[:, : -self.num_masks] for o in levels]
        coef = torch.cat([o[:, -self.num_masks :].flatten(2) for o in levels], 2).transpose(1, 2)
        return det, coef, protos

    def flatten(self, outputs):
        """:meth:`DetectHead.flatten` of the detection part (``decode`` goes through it too)."""
        det, _, _ = self.split(outputs)
        return super().flatten(det)


@register("head", "yolo_seg")
def yolo_seg(
    *, in_channels, in_strides, num_classes: int, reg_max: int = 16, num_masks: int = 32, proto_channels=None
) -> InstanceHead:
    """YOLO detection head + YOLACT mask coefficients and prototypes (instance segmentation)."""
    return InstanceHead(in_channels, in_strides, num_classes, reg_max, num_masks, proto_channels)

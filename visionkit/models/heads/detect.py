"""YOLO-style anchor-free detection head: decoupled box and class branches per level; boxes regressed as
distributions over ``reg_max`` bins of distance from the anchor point to each side (Generalized Focal Loss's
distribution focal regression)."""

from __future__ import annotations

import math

import torch
from torch import nn

from visionkit.models.layers import ConvBNAct
from visionkit.registry import register


class DetectHead(nn.Module):
    def __init__(self, in_channels, in_strides, num_classes: int, reg_max: int = 16, prior_imgsz: int = 640):
        super().__init__()
        self.num_classes, self.reg_max = num_classes, reg_max
        self.strides = tuple(in_strides)
        c0 = in_channels[0]
        c_box = max(16, c0 // 4, 4 * reg_max)
        c_cls = max(c0, min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_box, 3), ConvBNAct(c_box, c_box, 3), nn.Conv2d(c_box, 4 * reg_max, 1))
            for c in in_channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_cls, 3), ConvBNAct(c_cls, c_cls, 3), nn.Conv2d(c_cls, num_classes, 1))
            for c in in_channels
        )
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        for box, cls, s in zip(self.box, self.cls, self.strides):
            nn.init.constant_(box[-1].bias, 1.0)
            # start near 0.01 objects per (prior_imgsz/s)² cells so early BCE is not swamped by background
            nn.init.constant_(cls[-1].bias, math.log(5 / num_classes / (prior_imgsz / s) ** 2))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level (B, 4·reg_max + num_classes, H, W): raw box distributions, then class logits."""
        return [torch.cat([b(f), c(f)], 1) for b, c, f in zip(self.box, self.cls, features)]

    def flatten(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(distributions (B, N, 4, reg_max), class logits (B, N, C), anchor points (N, 2) in pixels,
        stride per anchor (N, 1))."""
        b = outputs[0].shape[0]
        flat = torch.cat([o.flatten(2) for o in outputs], 2).transpose(1, 2)  # B, N, 4R + C
        dist = flat[..., : 4 * self.reg_max].reshape(b, -1, 4, self.reg_max)
        logits = flat[..., 4 * self.reg_max :]
        points, strides = anchor_points(outputs, self.strides)
        return dist, logits, points, strides

    def decode(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (B, N, 4) as x1, y1, x2, y2 in input pixels and class scores (B, N, C) in 0..1."""
        dist, logits, points, strides = self.flatten(outputs)
        ltrb = dist.softmax(-1) @ self.bins.to(dist.dtype)  # expected distance in stride units
        return distances_to_boxes(ltrb * strides, points), logits.sigmoid()


def anchor_points(outputs: list[torch.Tensor], strides) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of every level, in pixels, and the stride of each."""
    points, stride_list = [], []
    for o, s in zip(outputs, strides):
        h, w = o.shape[-2:]
        # arange in fp32, then cast: ONNX Range has no float16, so an fp16 export would be invalid
        ys = ((torch.arange(h, device=o.device, dtype=torch.float32) + 0.5) * s).to(o.dtype)
        xs = ((torch.arange(w, device=o.device, dtype=torch.float32) + 0.5) * s).to(o.dtype)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx, yy], -1).reshape(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(s), device=o.device, dtype=o.dtype))
    return torch.cat(points), torch.cat(stride_list)


def distances_to_boxes(ltrb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    lt, rb = ltrb[..., :2], ltrb[..., 2:]
    return torch.cat([points - lt, points + rb], -1)


@register("head", "yolo")
def yolo(*, in_channels, in_strides, num_classes: int, reg_max: int = 16) -> DetectHead:
    """Anchor-free decoupled detection head with distribution focal regression (reg_max bins)."""
    return DetectHead(in_channels, in_strides, num_classes, reg_max)

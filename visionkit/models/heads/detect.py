"""YOLO-style anchor-free detection head: decoupled box and class branches per level; boxes regressed as
distributions over ``reg_max`` bins of distance from the anchor point to each side (Generalized Focal Loss's
distribution focal regression), or with ``reg_max=1`` as the distances themselves (no DFL: a narrower box branch
and no softmax to decode). ``cls_convs='separable'`` builds the class branch from depthwise-separable convs
(MobileNet's factorisation), a fraction of the full convs' multiply-adds at the finest level."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError
from visionkit.models.layers import ConvBNAct, DepthwiseSeparableConv
from visionkit.registry import register

CLS_CONVS = ("full", "separable")


def class_branch(c_in: int, width: int, num_classes: int, convs: str) -> nn.Sequential:
    if convs == "separable":
        return nn.Sequential(
            DepthwiseSeparableConv(c_in, width, act=nn.SiLU),
            DepthwiseSeparableConv(width, width, act=nn.SiLU),
            nn.Conv2d(width, num_classes, 1),
        )
    return nn.Sequential(ConvBNAct(c_in, width, 3), ConvBNAct(width, width, 3), nn.Conv2d(width, num_classes, 1))


class DetectHead(nn.Module):
    def __init__(
        self,
        in_channels,
        in_strides,
        num_classes: int,
        reg_max: int = 16,
        prior_imgsz: int = 640,
        cls_convs: str = "full",
    ):
        super().__init__()
        if not isinstance(reg_max, int) or isinstance(reg_max, bool) or not 1 <= reg_max <= 64:
            raise UsageError(f"detection head: reg_max={reg_max!r} must be an integer in 1..64 (1 = no DFL)")
        if cls_convs not in CLS_CONVS:
            raise UsageError(f"detection head: cls_convs={cls_convs!r} is not one of {', '.join(CLS_CONVS)}")
        self.num_classes, self.reg_max = num_classes, reg_max
        self.strides = tuple(in_strides)
        c0 = in_channels[0]
        c_box = max(16, c0 // 4, 4 * reg_max)
        c_cls = max(c0, min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_box, 3), ConvBNAct(c_box, c_box, 3), nn.Conv2d(c_box, 4 * reg_max, 1))
            for c in in_channels
        )
        self.cls = nn.ModuleList(class_branch(c, c_cls, num_classes, cls_convs) for c in in_channels)
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
        return distances_to_boxes(self.distances(dist) * strides, points), logits.sigmoid()

    def distances(self, dist: torch.Tensor) -> torch.Tensor:
        """(B, N, 4, reg_max) raw outputs → (B, N, 4) distances to the sides in stride units: the expectation over
        the bins, or with ``reg_max=1`` the output itself, kept positive by a softplus."""
        if self.reg_max == 1:
            return F.softplus(dist[..., 0])
        return dist.softmax(-1) @ self.bins.to(dist.dtype)


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
def yolo(*, in_channels, in_strides, num_classes: int, reg_max: int = 16, cls_convs: str = "full") -> DetectHead:
    """Anchor-free decoupled detection head with distribution focal regression (reg_max bins; 1 = plain distances,
    no DFL); ``cls_convs='separable'`` for a lighter class branch."""
    return DetectHead(in_channels, in_strides, num_classes, reg_max, cls_convs=cls_convs)

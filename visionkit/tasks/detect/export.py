"""What an exported detector outputs. Pure tensor ops, correct for every batch size and image size a dynamic
model accepts (nothing is specialised to the traced shape)."""

from __future__ import annotations

import torch
from torch import nn


class DetectExport(nn.Module):
    """Outputs ``boxes`` (B, N, 4: x1, y1, x2, y2 in input pixels) and ``scores`` (B, N, C: sigmoid class
    scores) for the N anchor points; confidence filtering and NMS are left to the caller."""

    output_names = ("boxes", "scores")
    dynamic_output_axes = {"boxes": {0: "batch", 1: "anchors"}, "scores": {0: "batch", 1: "anchors"}}
    layout = ("boxes (B, N, 4) x1 y1 x2 y2 in input pixels; scores (B, N, num_classes) sigmoid; no NMS: keep "
              "boxes with score > conf, then class-aware NMS")

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.head.decode(self.net(x))

"""What an exported segmenter outputs: class logits at the input resolution, or (``argmax=True``) the class map."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SegmentExport(nn.Module):
    """``logits`` (B, C, H, W) at the input resolution; softmax gives class probabilities."""

    output_names = ("logits",)
    dynamic_output_axes = {"logits": {0: "batch", 2: "height", 3: "width"}}
    layout = "logits (B, num_classes, H, W) at the input resolution; argmax over dim 1 gives the class map"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SegmentArgmaxExport(SegmentExport):
    """``classes`` (B, H, W) uint8 class ids at the input resolution (argmax in the graph: 4x-C smaller output)."""

    output_names = ("classes",)
    dynamic_output_axes = {"classes": {0: "batch", 1: "height", 2: "width"}}
    layout = "classes (B, H, W) uint8 class ids at the input resolution"
    summary = "argmax in the graph: the file outputs uint8 class ids"
    metadata = {"argmax": "true"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).argmax(1).to(torch.uint8)

    def check_split(self):
        """For the exporter's check: the logits network, compared numerically, and a check that the file's class
        map is the argmax of onnxruntime's own logits (near-ties may flip a pixel: 99.9 % must agree)."""

        def verify(network_outputs, file_outputs) -> list[str]:
            expected = np.asarray(network_outputs[0]).argmax(1)
            got = np.asarray(file_outputs[0])
            if got.shape != expected.shape:
                return [f"class map has shape {got.shape}, expected {expected.shape}"]
            agree = float((got == expected).mean())
            return [] if agree >= 0.999 else [f"class map agrees with argmax(logits) on {agree:.2%} of pixels"]

        return SegmentExport(self.net).eval(), verify

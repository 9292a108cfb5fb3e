"""What an exported classifier outputs."""

from __future__ import annotations

import torch


class ClassifyExport(torch.nn.Module):
    """Exported classifiers output ``logits`` (B, num_classes); softmax gives probabilities."""

    output_names = ("logits",)
    dynamic_output_axes = {"logits": {0: "batch"}}
    layout = "logits (B, num_classes); softmax gives class probabilities"

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

"""The do-nothing neck, for tasks whose head reads backbone features directly (classification)."""

from __future__ import annotations

import torch
from torch import nn

from visionkit.registry import register


class IdentityNeck(nn.Module):
    def __init__(self, in_channels, in_strides):
        super().__init__()
        self.channels = tuple(in_channels)
        self.strides = tuple(in_strides)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return features


@register("neck", "identity")
def identity(*, in_channels, in_strides) -> IdentityNeck:
    """Pass the backbone's features through unchanged."""
    return IdentityNeck(in_channels, in_strides)

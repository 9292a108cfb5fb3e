"""Classification heads. Both read the deepest feature map and return logits (N, num_classes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError
from visionkit.registry import register

POOLS = ("avg", "max", "catavgmax")


class LinearHead(nn.Module):
    """Global pool → dropout → linear.

    ``pool``: 'avg' (GAP), 'max' (global max pool: is a pattern anywhere?) or 'catavgmax' (both, concatenated:
    twice the linear's inputs). On mnist-8k either max pool lowered the loss but not the errors (docs/course.md).
    """

    def __init__(self, in_channels, in_strides, num_classes: int, dropout: float = 0.0, pool: str = "avg"):
        super().__init__()
        if pool not in POOLS:
            raise UsageError(f"head linear: pool={pool!r} is not one of {', '.join(POOLS)}")
        self.pool = pool
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels[-1] * (2 if pool == "catavgmax" else 1), num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        if self.pool == "avg":
            x = x.mean(dim=(2, 3))
        elif self.pool == "max":
            x = x.amax(dim=(2, 3))
        else:
            x = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.fc(self.drop(x))


class BilinearHead(nn.Module):
    """Bilinear pooling (Lin et al., 2015): average outer product of the feature vectors over positions,
    signed square root, L2 normalisation, then linear. A 1×1 conv first reduces channels to ``dim`` so the
    descriptor (dim²) stays small.
    """

    def __init__(self, in_channels, in_strides, num_classes: int, dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels[-1], dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim * dim, num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.reduce(features[-1]).flatten(2)  # N, d, HW
        gram = torch.bmm(x, x.transpose(1, 2)) / x.shape[-1]  # N, d, d
        z = gram.flatten(1)
        z = torch.sign(z) * torch.sqrt(z.abs() + 1e-8)
        z = F.normalize(z, dim=1)
        return self.fc(self.drop(z))


@register("head", "linear")
def linear(*, in_channels, in_strides, num_classes: int, dropout: float = 0.0, pool: str = "avg") -> LinearHead:
    """Global pool ('avg', 'max' or 'catavgmax'), dropout, linear."""
    return LinearHead(in_channels, in_strides, num_classes, dropout, pool)


@register("head", "bilinear")
def bilinear(*, in_channels, in_strides, num_classes: int, dim: int = 64, dropout: float = 0.0) -> BilinearHead:
    """Bilinear pooling for fine-grained classes (signed sqrt + L2 normalisation)."""
    return BilinearHead(in_channels, in_strides, num_classes, dim, dropout)

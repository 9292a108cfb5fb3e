"""A small Vision Transformer (patch embedding + pre-norm transformer encoder), kept to the backbone contract by
a reassemble step (DPT): the token grid becomes a feature map at the patch stride, then is resampled to each
requested stride (transposed conv to go finer, strided conv to go coarser).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.models.backbones.base import Backbone, select_strides
from visionkit.registry import register


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(Backbone):
    def __init__(
        self,
        out_strides=None,
        in_channels: int = 3,
        patch: int = 4,
        dim: int = 96,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        grid: int = 8,
    ):
        super().__init__()
        if patch & (patch - 1):
            raise ValueError(f"vit: patch must be a power of two, got {patch}")
        available = {patch * 2**k: dim for k in range(-2, 4) if patch * 2**k >= 1}
        self.strides = select_strides(available, out_strides or (patch,), "vit")
        self.channels = tuple(dim for _ in self.strides)
        self.in_channels = in_channels
        self.patch = patch
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        # learned position embedding for a grid×grid token layout; resized for other input sizes
        self.pos = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.reassemble = nn.ModuleList(
            self._resampler(dim, s // patch if s >= patch else -(patch // s)) for s in self.strides
        )

    @staticmethod
    def _resampler(dim: int, factor: int) -> nn.Module:
        if factor == 1:
            return nn.Identity()
        if factor > 1:
            return nn.Conv2d(dim, dim, factor, factor)
        return nn.ConvTranspose2d(dim, dim, -factor, -factor)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.embed(x)
        n, c, h, w = x.shape
        pos = (
            self.pos
            if self.pos.shape[-2:] == (h, w)
            else F.interpolate(self.pos, size=(h, w), mode="bicubic", align_corners=False)
        )
        tokens = (x + pos).flatten(2).transpose(1, 2)
        tokens = self.norm(self.blocks(tokens))
        fmap = tokens.transpose(1, 2).reshape(n, c, h, w)
        return [r(fmap) for r in self.reassemble]


@register("backbone", "vit")
def vit(
    *,
    out_strides=None,
    in_channels: int = 3,
    patch: int = 4,
    dim: int = 96,
    depth: int = 6,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    imgsz: int = 32,
) -> ViT:
    """Plain ViT; ``imgsz`` sets the native position-embedding grid (other sizes interpolate it)."""
    return ViT(out_strides, in_channels, patch, dim, depth, heads, mlp_ratio, dropout, grid=math.ceil(imgsz / patch))


@register("backbone", "vit_tiny")
def vit_tiny(*, out_strides=None, in_channels: int = 3, imgsz: int = 32, **kw) -> ViT:
    """ViT for 32×32-ish images: patch 4, dim 96, 6 blocks, 4 heads (about 0.46M parameters)."""
    return vit(out_strides=out_strides, in_channels=in_channels, imgsz=imgsz, **kw)

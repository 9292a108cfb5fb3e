"""Building blocks shared by backbones, necks and heads."""

from __future__ import annotations

import torch
from torch import nn


def autopad(kernel: int, dilation: int = 1) -> int:
    """'same' padding for odd kernels at stride 1."""
    return dilation * (kernel - 1) // 2


class ConvBNAct(nn.Sequential):
    """Conv2d → BatchNorm2d → activation (SiLU by default; ``act=None`` for none)."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, p: int | None = None, d: int = 1,
                 groups: int = 1, act: type[nn.Module] | None = nn.SiLU):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, autopad(k, d) if p is None else p, dilation=d, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            act() if act is not None else nn.Identity(),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k×k conv (optionally dilated or strided) then a pointwise 1×1 conv, each with BN and activation.

    About k²/c_out the multiply-adds of a full conv for the same receptive field (MobileNet).
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, d: int = 1,
                 act: type[nn.Module] | None = nn.ReLU):
        super().__init__(
            ConvBNAct(c_in, c_in, k, s, d=d, groups=c_in, act=act),
            ConvBNAct(c_in, c_out, 1, act=act),
        )



def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts to a multiple of ``divisor`` (never below it)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def num_params(module: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def is_norm_or_bias(name: str, param: torch.Tensor) -> bool:
    """Parameters that should not get weight decay: biases and 1-D norm scales."""
    return param.ndim <= 1 or name.endswith(".bias")

"""Building blocks shared by backbones, necks and heads."""

from __future__ import annotations

import torch
from torch import nn


def autopad(kernel: int, dilation: int = 1) -> int:
    """'same' padding for odd kernels at stride 1."""
    return dilation * (kernel - 1) // 2


class ConvBNAct(nn.Sequential):
    """Conv2d → BatchNorm2d → activation (SiLU by default; ``act=None`` for none)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int = 3,
        s: int = 1,
        p: int | None = None,
        d: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.SiLU,
    ):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, autopad(k, d) if p is None else p, dilation=d, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            act() if act is not None else nn.Identity(),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k×k conv (optionally dilated or strided) then a pointwise 1×1 conv, each with BN and activation.

    About k²/c_out the multiply-adds of a full conv for the same receptive field (MobileNet).
    """

    def __init__(
        self, c_in: int, c_out: int, k: int = 3, s: int = 1, d: int = 1, act: type[nn.Module] | None = nn.ReLU
    ):
        super().__init__(
            ConvBNAct(c_in, c_in, k, s, d=d, groups=c_in, act=act),
            ConvBNAct(c_in, c_out, 1, act=act),
        )


# the activations a model config's ``act`` may name; visionkit's own layers use SiLU, and ``act`` replaces it
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
}


def replace_silu(module: nn.Module, act: type[nn.Module]) -> None:
    """Swap every ``nn.SiLU`` inside ``module`` for a fresh ``act()``. ReLU costs nothing at inference (onnxruntime,
    OpenVINO and TFLite fold it into the conv before it, in float and in int8), while SiLU is a sigmoid and a
    product per value, and in an int8 file two more requantised ops per conv."""
    for name, child in module.named_children():
        if isinstance(child, nn.SiLU):
            setattr(module, name, act())
        else:
            replace_silu(child, act)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts to a multiple of ``divisor`` (never below it)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def num_params(module: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def is_norm_or_bias(name: str, param: torch.Tensor) -> bool:
    """Parameters that should not get weight decay: biases and 1-D norm scales."""
    return param.ndim <= 1 or name.endswith(".bias")


class Bottleneck(nn.Module):
    """Two 3×3 ConvBNAct with an optional residual (when shapes allow)."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 0.5):
        super().__init__()
        hidden = int(c_out * expansion)
        self.cv1 = ConvBNAct(c_in, hidden, 3)
        self.cv2 = ConvBNAct(hidden, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convolutions: split the channels, run ``n`` bottlenecks on one half, and concatenate
    every intermediate output (a cross-stage-partial design with richer gradient paths)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False):
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBNAct(c_in, 2 * self.hidden, 1)
        self.cv2 = ConvBNAct((2 + n) * self.hidden, c_out, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, self.hidden, shortcut, 1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.blocks:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5×5 max-pools (receptive fields 5, 9, 13) concatenated."""

    def __init__(self, c_in: int, c_out: int, k: int = 5):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBNAct(c_in, hidden, 1)
        self.cv2 = ConvBNAct(hidden * 4, c_out, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))

"""Small CNNs from the course: MNIST nets under 20k and under 8k parameters and a dilated, depthwise-separable CIFAR
net."""

from __future__ import annotations

import functools

from torch import nn

from visionkit.errors import UsageError
from visionkit.models.backbones.base import StagedBackbone
from visionkit.models.layers import ACTIVATIONS, ConvBNAct, DepthwiseSeparableConv
from visionkit.registry import register

BN_ORDERS = ("relu-bn", "bn-relu")


def _unit(
    c_in: int, c_out: int, dropout: float, k: int = 3, bn_order: str = "relu-bn", act: str = "relu"
) -> nn.Sequential:
    """The course's unit: conv → ReLU → BN → dropout, or with ``bn_order='bn-relu'`` conv → BN → ReLU → dropout
    (the order of ResNet and most nets since: BN normalises what the ReLU cuts). ``act`` swaps the ReLU for
    another activation of ``ACTIVATIONS`` (SiLU: smooth, lets small negative values through)."""
    act_norm = [ACTIVATIONS[act](), nn.BatchNorm2d(c_out)]
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        *(act_norm if bn_order == "relu-bn" else act_norm[::-1]),
        nn.Dropout2d(dropout) if dropout else nn.Identity(),
    )


def _unit_maker(name: str, bn_order: str, act: str):
    """``_unit`` with the net's order and activation, both checked (a bad value names the net and the key)."""
    if bn_order not in BN_ORDERS:
        raise UsageError(f"{name}: bn_order={bn_order!r} is not one of {', '.join(BN_ORDERS)}")
    if act not in ACTIVATIONS:
        raise UsageError(f"{name}: act={act!r} is not one of {', '.join(ACTIVATIONS)}")
    return functools.partial(_unit, bn_order=bn_order, act=act)


class MNISTNet(StagedBackbone):
    """Conv blocks with 1×1 transitions and max-pooling; ends in a feature map for global average pooling.

    28×28 → (stride 1) 28 → (stride 2) 14 → (stride 4) 7. About 13k parameters with the default widths.
    """

    def __init__(
        self,
        out_strides=None,
        in_channels: int = 1,
        width: int = 16,
        dropout: float = 0.05,
        bn_order: str = "relu-bn",
        act: str = "relu",
    ):
        c = width
        unit = _unit_maker("mnist_net", bn_order, act)
        stages = [
            nn.Sequential(unit(in_channels, c // 2, dropout), unit(c // 2, c, dropout)),
            nn.Sequential(
                nn.MaxPool2d(2, ceil_mode=True),
                unit(c, c // 2, 0, k=1),  # transition
                unit(c // 2, c, dropout),
                unit(c, c, dropout),
            ),
            nn.Sequential(
                nn.MaxPool2d(2, ceil_mode=True),
                unit(c, c // 2, 0, k=1),
                unit(c // 2, c, dropout),
                unit(c, c + c // 4, dropout),
                unit(c + c // 4, c + c // 4, 0),
            ),
        ]
        super().__init__(stages, [1, 2, 4], [c, c, c + c // 4], out_strides, in_channels, "mnist_net")


class MNISTLeanNet(StagedBackbone):
    """The under-8k MNIST net: two 3×3 convs per resolution, each pair opened by a 1×1 squeeze after max-pooling.

    28×28 → (stride 1) 28 → (stride 2) 14 → (stride 4) 7; receptive field 32 px at stride 4. With the default
    ``widths`` (8, 16, 12, 16, 14, 16) and ``squeeze`` (8, 10) it has 7,580 parameters, plus 170 in a linear head.
    The parameters go where they pay: the widest convs sit at 14×14 and 7×7, where a channel costs few FLOPs and
    a digit's strokes are already combined; the 1×1s keep the 3×3 after each pool cheap.
    """

    def __init__(
        self,
        out_strides=None,
        in_channels: int = 1,
        widths: tuple[int, ...] = (8, 16, 12, 16, 14, 16),
        squeeze: tuple[int, ...] = (8, 10),
        dropout: float = 0.05,
        bn_order: str = "relu-bn",
        act: str = "relu",
    ):
        unit = _unit_maker("mnist_lean", bn_order, act)
        if len(widths) != 6 or len(squeeze) != 2:
            raise UsageError(
                f"mnist_lean: widths needs 6 values (two 3×3 convs at each of 3 resolutions) and squeeze "
                f"2 (the 1×1 after each max-pool); got widths={list(widths)}, squeeze={list(squeeze)}"
            )
        w, q = widths, squeeze
        stages = [
            nn.Sequential(unit(in_channels, w[0], dropout), unit(w[0], w[1], dropout)),
            nn.Sequential(
                nn.MaxPool2d(2, ceil_mode=True),
                unit(w[1], q[0], 0, k=1),
                unit(q[0], w[2], dropout),
                unit(w[2], w[3], dropout),
            ),
            # no dropout on the last conv: its channels are all the linear head sees
            nn.Sequential(
                nn.MaxPool2d(2, ceil_mode=True),
                unit(w[3], q[1], 0, k=1),
                unit(q[1], w[4], dropout),
                unit(w[4], w[5], 0),
            ),
        ]
        super().__init__(stages, [1, 2, 4], [w[1], w[3], w[5]], out_strides, in_channels, "mnist_lean")


class CIFARDilatedNet(StagedBackbone):
    """No max-pooling: depthwise-separable blocks, dilated convs to grow the receptive field, strided convs to
    downsample. Receptive field 75 px at 32×32 input, about 150k parameters.
    """

    def __init__(self, out_strides=None, in_channels: int = 3, dropout: float = 0.05):
        act = nn.ReLU
        stages = [
            nn.Sequential(
                ConvBNAct(in_channels, 24, act=act),
                DepthwiseSeparableConv(24, 32),
                ConvBNAct(32, 32, d=2, act=act),
                nn.Dropout2d(dropout),
            ),
            nn.Sequential(
                ConvBNAct(32, 48, s=2, act=act),
                DepthwiseSeparableConv(48, 48),
                DepthwiseSeparableConv(48, 64, d=2),
                nn.Dropout2d(dropout),
            ),
            nn.Sequential(
                ConvBNAct(64, 96, s=2, act=act),
                DepthwiseSeparableConv(96, 96),
                DepthwiseSeparableConv(96, 128, d=2),
                nn.Dropout2d(dropout),
            ),
            nn.Sequential(DepthwiseSeparableConv(128, 128, s=2), DepthwiseSeparableConv(128, 160)),
        ]
        super().__init__(stages, [1, 2, 4, 8], [32, 64, 128, 160], out_strides, in_channels, "cifar_dilated")


@register("backbone", "mnist_net")
def mnist_net(
    *,
    out_strides=None,
    in_channels: int = 1,
    width: int = 16,
    dropout: float = 0.05,
    bn_order: str = "relu-bn",
    act: str = "relu",
) -> MNISTNet:
    """Course MNIST net (strides 1, 2, 4); ``bn_order``: 'relu-bn' (the course's unit) or 'bn-relu'; ``act``:
    relu (the course's), silu, relu6 or hardswish."""
    return MNISTNet(out_strides, in_channels, width, dropout, bn_order, act)


@register("backbone", "mnist_lean")
def mnist_lean(
    *,
    out_strides=None,
    in_channels: int = 1,
    widths: tuple[int, ...] = (8, 16, 12, 16, 14, 16),
    squeeze: tuple[int, ...] = (8, 10),
    dropout: float = 0.05,
    bn_order: str = "relu-bn",
    act: str = "relu",
) -> MNISTLeanNet:
    """Course MNIST net under 8k parameters (strides 1, 2, 4); ``bn_order``: 'relu-bn' (the course's unit) or
    'bn-relu'; ``act``: relu (the course's), silu, relu6 or hardswish."""
    return MNISTLeanNet(out_strides, in_channels, tuple(widths), tuple(squeeze), dropout, bn_order, act)


@register("backbone", "cifar_dilated")
def cifar_dilated(*, out_strides=None, in_channels: int = 3, dropout: float = 0.05) -> CIFARDilatedNet:
    """Course CIFAR net: depthwise-separable + dilated, no max-pooling (strides 1, 2, 4, 8)."""
    return CIFARDilatedNet(out_strides, in_channels, dropout)

"""Small CNNs from the course: an MNIST net under 20k parameters and a dilated, depthwise-separable CIFAR net."""

from __future__ import annotations

from torch import nn

from visionkit.models.backbones.base import StagedBackbone
from visionkit.models.layers import ConvBNAct, DepthwiseSeparableConv
from visionkit.registry import register


def _conv(c_in: int, c_out: int, dropout: float, k: int = 3) -> nn.Sequential:
    # the course's unit: conv → ReLU → BN → dropout
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.ReLU(), nn.BatchNorm2d(c_out),
                         nn.Dropout2d(dropout) if dropout else nn.Identity())


class MNISTNet(StagedBackbone):
    """Conv blocks with 1×1 transitions and max-pooling; ends in a feature map for global average pooling.

    28×28 → (stride 1) 28 → (stride 2) 14 → (stride 4) 7. About 13k parameters with the default widths.
    """

    def __init__(self, out_strides=None, in_channels: int = 1, width: int = 16, dropout: float = 0.05):
        c = width
        stages = [
            nn.Sequential(_conv(in_channels, c // 2, dropout), _conv(c // 2, c, dropout)),
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), _conv(c, c // 2, 0, k=1),  # transition
                          _conv(c // 2, c, dropout), _conv(c, c, dropout)),
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), _conv(c, c // 2, 0, k=1),
                          _conv(c // 2, c, dropout), _conv(c, c + c // 4, dropout), _conv(c + c // 4, c + c // 4, 0)),
        ]
        super().__init__(stages, [1, 2, 4], [c, c, c + c // 4], out_strides, in_channels, "mnist_net")


class CIFARDilatedNet(StagedBackbone):
    """No max-pooling: depthwise-separable blocks, dilated convs to grow the receptive field, strided convs to
    downsample. Receptive field 75 px at 32×32 input, about 150k parameters.
    """

    def __init__(self, out_strides=None, in_channels: int = 3, dropout: float = 0.05):
        act = nn.ReLU
        stages = [
            nn.Sequential(ConvBNAct(in_channels, 24, act=act), DepthwiseSeparableConv(24, 32),
                          ConvBNAct(32, 32, d=2, act=act), nn.Dropout2d(dropout)),
            nn.Sequential(ConvBNAct(32, 48, s=2, act=act), DepthwiseSeparableConv(48, 48),
                          DepthwiseSeparableConv(48, 64, d=2), nn.Dropout2d(dropout)),
            nn.Sequential(ConvBNAct(64, 96, s=2, act=act), DepthwiseSeparableConv(96, 96),
                          DepthwiseSeparableConv(96, 128, d=2), nn.Dropout2d(dropout)),
            nn.Sequential(DepthwiseSeparableConv(128, 128, s=2), DepthwiseSeparableConv(128, 160)),
        ]
        super().__init__(stages, [1, 2, 4, 8], [32, 64, 128, 160], out_strides, in_channels, "cifar_dilated")


@register("backbone", "mnist_net")
def mnist_net(*, out_strides=None, in_channels: int = 1, width: int = 16, dropout: float = 0.05) -> MNISTNet:
    """Course MNIST net (strides 1, 2, 4)."""
    return MNISTNet(out_strides, in_channels, width, dropout)


@register("backbone", "cifar_dilated")
def cifar_dilated(*, out_strides=None, in_channels: int = 3, dropout: float = 0.05) -> CIFARDilatedNet:
    """Course CIFAR net: depthwise-separable + dilated, no max-pooling (strides 1, 2, 4, 8)."""
    return CIFARDilatedNet(out_strides, in_channels, dropout)

"""torchvision classification networks as backbones.

Each network is laid out as one chain of modules (stem, stages); a probe forward at build time finds the stride and
channels after each module, and the chain is cut into stages that end where the stride changes. Weights are never
downloaded: pass ``weights=path`` to load a local state_dict file (e.g. torchvision's ImageNet file).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from visionkit.errors import CheckpointError
from visionkit.models.backbones.base import StagedBackbone
from visionkit.models.checkpoint import safe_load
from visionkit.registry import register

_PROBE = 64


def _module_chain(name: str, net: nn.Module) -> list[nn.Module]:
    if name.startswith("resnet"):
        return [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
    return list(net.features.children())  # mobilenet_v3, efficientnet, convnext


def _replace_first_conv(chain: list[nn.Module], in_channels: int) -> None:
    """Adapt the stem to ``in_channels`` input; pretrained RGB filters are summed (gray) or tiled."""
    for parent in chain:
        for mod_name, conv in list(parent.named_modules()):
            if isinstance(conv, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    conv.out_channels,
                    conv.kernel_size,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.groups,
                    conv.bias is not None,
                )
                with torch.no_grad():
                    w = conv.weight.sum(1, keepdim=True) / in_channels
                    new.weight.copy_(w.repeat(1, in_channels, 1, 1))
                    if conv.bias is not None:
                        new.bias.copy_(conv.bias)
                owner = parent
                *path, last = mod_name.split(".") if mod_name else [None]
                for p in path:
                    owner = getattr(owner, p)
                if last is None:  # the chain element itself is the conv
                    chain[chain.index(parent)] = new
                else:
                    setattr(owner, last, new)
                return


def load_local_weights(net: nn.Module, weights: str | Path) -> None:
    """Load a state_dict (or a dict holding one under 'state_dict'/'model') from a local file, safely."""
    path = Path(weights)
    sd = safe_load(path, "weights file")
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    missing, unexpected = net.load_state_dict(sd, strict=False)
    backbone_missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
    if backbone_missing:
        raise CheckpointError(
            f"weights file '{path}' lacks {len(backbone_missing)} backbone tensors, "
            f"e.g. {backbone_missing[:3]}: is it for this network?"
        )


class TorchvisionBackbone(StagedBackbone):
    def __init__(self, name: str, out_strides=None, in_channels: int = 3, weights: str | None = None):
        net = getattr(torchvision.models, name)(weights=None)
        if weights:
            load_local_weights(net, weights)
        chain = _module_chain(name, net)
        if in_channels != 3:
            _replace_first_conv(chain, in_channels)
        strides, channels = [], []
        with torch.no_grad():
            x = torch.zeros(1, in_channels, _PROBE, _PROBE)
            for m in chain:
                was = m.training
                m.eval()
                x = m(x)
                m.train(was)
                strides.append(_PROBE // x.shape[-1])
                channels.append(x.shape[1])
        stages, stage_strides, stage_channels, start = [], [], [], 0
        for i, s in enumerate(strides):
            if i == len(strides) - 1 or strides[i + 1] != s:
                stages.append(nn.Sequential(*chain[start : i + 1]))
                stage_strides.append(s)
                stage_channels.append(channels[i])
                start = i + 1
        super().__init__(stages, stage_strides, stage_channels, out_strides, in_channels, name)


@register("backbone", "resnet18")
def resnet18(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision ResNet-18 (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("resnet18", out_strides, in_channels, weights)


@register("backbone", "resnet34")
def resnet34(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision ResNet-34 (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("resnet34", out_strides, in_channels, weights)


@register("backbone", "resnet50")
def resnet50(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision ResNet-50 (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("resnet50", out_strides, in_channels, weights)


@register("backbone", "mobilenet_v3_small")
def mobilenet_v3_small(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision MobileNetV3-small (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("mobilenet_v3_small", out_strides, in_channels, weights)


@register("backbone", "mobilenet_v3_large")
def mobilenet_v3_large(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision MobileNetV3-large (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("mobilenet_v3_large", out_strides, in_channels, weights)


@register("backbone", "efficientnet_b0")
def efficientnet_b0(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision EfficientNet-B0 (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("efficientnet_b0", out_strides, in_channels, weights)


@register("backbone", "convnext_tiny")
def convnext_tiny(*, out_strides=None, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """torchvision ConvNeXt-tiny (random init, or weights=PATH for a local state_dict file)."""
    return TorchvisionBackbone("convnext_tiny", out_strides, in_channels, weights)

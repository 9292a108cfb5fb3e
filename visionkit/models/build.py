"""Model config (a plain dict) → ``nn.Module`` through the registry.

A config fully describes the network::

    {"task": "classify", "num_classes": 10, "in_channels": 1,
     "backbone": {"name": "mnist_net", "out_strides": [4]},
     "neck": {"name": "identity"},
     "head": {"name": "linear", "dropout": 0.0}}

The backbone's declared ``channels``/``strides`` are the only source of the neck's and head's input sizes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from visionkit.errors import UsageError
from visionkit.limits import DEFAULT_IN_CHANNELS, MAX_CLASSES, MAX_IN_CHANNELS
from visionkit.models.layers import ACTIVATIONS, replace_silu
from visionkit.registry import REGISTRY


def _spec(part: Any, field: str) -> dict:
    if isinstance(part, str):
        return {"name": part}
    if isinstance(part, dict) and "name" in part:
        return dict(part)
    raise UsageError(f"model config '{field}' must be a name or a mapping with 'name', got {part!r}")


def check_declared_features(backbone: nn.Module, name: str, in_channels: int, imgsz: int | None, rebuild) -> None:
    """A backbone's declared ``channels`` and ``strides`` (what the neck and head are built from) against what it
    returns, checked with a forward pass of a copy on the meta device (no memory, no compute): a plugin that
    declares them wrong fails here, naming itself, not deep inside a head. Networks with an op that has no meta
    kernel are left to the contract tests' real forward. ``rebuild()`` builds the same backbone again."""
    strides, channels = tuple(backbone.strides), tuple(backbone.channels)
    if len(strides) != len(channels) or list(strides) != sorted(set(strides)):
        raise UsageError(
            f"backbone '{name}' declares strides {strides} and channels {channels}: they must pair up, strides "
            f"strictly increasing"
        )
    step = max(strides)
    size = max(step * 2, -(-int(imgsz or 0) // step) * step)
    try:
        with torch.device("meta"):
            skeleton = rebuild()  # built on the meta device: allocates nothing
            features = skeleton(torch.empty(1, in_channels, size, size))
    except Exception:  # no meta kernel for some op, or a fixed-size network given another size
        return
    got = [(int(f.shape[1]), size // int(f.shape[-1]) if f.shape[-1] else 0) for f in features]
    declared = list(zip(channels, strides))
    if got != declared:
        raise UsageError(
            f"backbone '{name}' declares (channels, stride) {declared} but returns {got} on a {size}x{size} input; "
            f"fix its channels/strides attributes"
        )


class VisionModel(nn.Module):
    """backbone → neck → head. ``forward`` returns the head's raw output (no post-processing)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = normalize_config(config)
        cfg = self.config
        bb = dict(cfg["backbone"])
        name = bb.pop("name")
        self.backbone = REGISTRY.build("backbone", name, in_channels=cfg["in_channels"], **bb)
        check_declared_features(
            self.backbone,
            name,
            cfg["in_channels"],
            cfg.get("imgsz"),
            lambda: REGISTRY.build("backbone", name, in_channels=cfg["in_channels"], **bb),
        )
        nk = dict(cfg["neck"])
        self.neck = REGISTRY.build(
            "neck", nk.pop("name"), in_channels=self.backbone.channels, in_strides=self.backbone.strides, **nk
        )
        hd = dict(cfg["head"])
        self.head = REGISTRY.build(
            "head",
            hd.pop("name"),
            in_channels=self.neck.channels,
            in_strides=self.neck.strides,
            num_classes=cfg["num_classes"],
            **hd,
        )
        if cfg.get("act") not in (None, "silu"):  # the parts are built with SiLU; `act` swaps it model-wide
            replace_silu(self, ACTIVATIONS[cfg["act"]])

    def forward(self, x: torch.Tensor):
        return self.head(self.neck(self.backbone(x)))

    @property
    def stride(self) -> int:
        return max(self.backbone.strides)


def normalize_config(config: dict) -> dict:
    """Fill defaults and check the required keys of a model config; returns a deep copy."""
    cfg = copy.deepcopy(dict(config))
    for key in ("task", "backbone", "head", "num_classes"):
        if key not in cfg or cfg[key] is None:
            raise UsageError(f"model config lacks '{key}'; see docs/plugins.md for the layout of a model config")
    cfg["backbone"] = _spec(cfg["backbone"], "backbone")
    cfg["neck"] = _spec(cfg.get("neck") or "identity", "neck")
    cfg["head"] = _spec(cfg["head"], "head")
    for key, default, high in (
        ("num_classes", None, MAX_CLASSES),
        ("in_channels", DEFAULT_IN_CHANNELS, MAX_IN_CHANNELS),
    ):
        value = cfg.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise UsageError(f"model config {key}={value!r}: expected an integer in 1..{high}")
        cfg[key] = value
    if cfg.get("act") is not None and cfg["act"] not in ACTIVATIONS:
        raise UsageError(
            f"model config act={cfg['act']!r}: expected one of {', '.join(ACTIVATIONS)} (the activation that "
            f"replaces SiLU throughout the model), or leave it out"
        )
    return cfg


def build_model(config: dict) -> VisionModel:
    """Build the network that ``config`` describes."""
    return VisionModel(config)

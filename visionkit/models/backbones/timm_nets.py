"""Any timm network as a backbone: ``backbone=timm/<name>`` (or ``model=timm/<name>``: the task's neck and head on it).

The ``timm/`` names form a registry family: they are resolved on demand (timm has over a thousand networks), so
nothing is registered or imported until one is asked for. A network is built with ``features_only=True`` and
``pretrained=False`` (never a download; ``weights=PATH`` loads a file). Its FeatureInfo (channels and reductions
of every feature map) is the only source of ``channels``/``strides``; the task's strides select ``out_indices``,
and a forward pass on the meta device (no memory, no compute) checks that the network returns what FeatureInfo
declares before any real weight is allocated.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from visionkit.errors import RegistryError, UsageError
from visionkit.models.backbones.base import Backbone, select_strides
from visionkit.registry import REGISTRY, Family

PREFIX = "timm/"
INSTALL_HINT = "pip install 'visionkit[timm]'"


def _timm():
    try:
        import timm
    except ImportError as e:
        raise RegistryError(f"backbones named {PREFIX}<name> need timm, which is not installed: {INSTALL_HINT}") from e
    return timm


def _feature_entries(net: nn.Module) -> list[dict[str, Any]]:
    """Every feature map the network can give (not only the selected ones), in order."""
    info = net.feature_info
    entries = getattr(info, "info", None)
    if entries is None:  # older timm: a plain list of dicts
        entries = list(info)
    return [dict(e) for e in entries]


class TimmBackbone(Backbone):
    """A timm ``features_only`` network kept to the backbone contract (``channels``/``strides``, list output)."""

    def __init__(self, name: str, out_strides=None, in_channels: int = 3, **timm_kwargs: Any):
        super().__init__()
        timm = _timm()
        owner = f"{PREFIX}{name}"
        kw = {"pretrained": False, "features_only": True, "in_chans": in_channels, **timm_kwargs}
        try:
            with torch.device("meta"):  # all feature maps, allocating nothing
                probe = timm.create_model(name, **kw)
        except Exception as e:  # timm raises RuntimeError/ValueError/TypeError for models without features_only
            raise UsageError(
                f"{owner} cannot be built as a feature extractor (features_only=True): "
                f"{type(e).__name__}: {str(e)[:300]}"
            ) from e
        entries = _feature_entries(probe)
        available: dict[int, int] = {}
        index_of: dict[int, int] = {}
        for i, e in enumerate(entries):
            available[int(e["reduction"])] = int(e["num_chs"])  # a later map at the same stride is deeper: it wins
            index_of[int(e["reduction"])] = i
        self.strides = select_strides(available, out_strides, owner)
        self.channels = tuple(available[s] for s in self.strides)
        self.in_channels = in_channels
        self.timm_name = name
        self.out_indices = tuple(index_of[s] for s in self.strides)
        self.feature_modules = [str(e["module"]) for e in entries[: max(self.out_indices) + 1]]
        self.body = timm.create_model(name, out_indices=self.out_indices, **kw)
        self._check(owner)

    def _check(self, owner: str) -> None:
        """FeatureInfo of the built network and a meta-device forward agree with ``channels``/``strides``."""
        info = self.body.feature_info
        got = (tuple(info.channels()), tuple(info.reduction()))
        if got != (self.channels, self.strides):
            raise UsageError(
                f"{owner}: timm built feature maps with channels {got[0]} at strides {got[1]}, but FeatureInfo "
                f"declared {self.channels} at {self.strides}; this network cannot be used as a backbone"
            )
        # the network's native input size: a fixed-size network (a ViT without dynamic_img_size) takes only that
        native = (getattr(self.body, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224)
        size = max(int(native[-1]), self.strides[-1]) // self.strides[-1] * self.strides[-1]
        try:
            with torch.device("meta"):
                skeleton = timm_clone_on_meta(self)
                shapes = [tuple(f.shape) for f in skeleton(torch.empty(1, self.in_channels, size, size))]
        except Exception:  # an op without a meta kernel: the contract tests still run a real forward
            return
        want = [(1, c, size // s, size // s) for c, s in zip(self.channels, self.strides)]
        if shapes != want:
            raise UsageError(
                f"{owner}: a {size}×{size} input gives feature maps {shapes}, FeatureInfo declares {want}; "
                f"this network does not keep to its declared strides (a fixed-size ViT?) and cannot be a backbone"
            )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        return list(out.values()) if isinstance(out, dict) else list(out)

    def stage_modules(self) -> list[list[nn.Module]]:
        """The modules of each feature stage, in order (stage i ends with feature map i), for ``freeze=N``."""
        order = list(self.body.named_modules())
        position = {n: i for i, (n, _) in enumerate(order)}
        ends = []
        for feature in self.feature_modules:
            names = [n for n in (feature, feature.replace(".", "_")) if n in position]
            if not names:
                raise UsageError(f"{PREFIX}{self.timm_name}: feature module '{feature}' not found; use freeze=backbone")
            root = names[0]
            ends.append(max(i for i, (n, _) in enumerate(order) if n == root or n.startswith(root + ".")))
        stages, start = [], 0
        for end in ends:
            # modules holding tensors themselves: a container (the network, a block list) spans later stages too
            stages.append([m for _, m in order[start : end + 1] if _owns_tensors(m)])
            start = end + 1
        return stages


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def timm_clone_on_meta(backbone: TimmBackbone) -> nn.Module:
    """The same network built again on the current (meta) device, for a shape check."""
    timm = _timm()
    return timm.create_model(
        backbone.timm_name,
        pretrained=False,
        features_only=True,
        in_chans=backbone.in_channels,
        out_indices=backbone.out_indices,
    ).eval()


def _builder(name: str) -> Callable[..., TimmBackbone]:
    def builder(*, out_strides=None, in_channels: int = 3, **timm_kwargs: Any) -> TimmBackbone:
        return TimmBackbone(name, out_strides, in_channels, **timm_kwargs)

    builder.__name__ = f"timm_{name}"
    builder.__qualname__ = builder.__name__
    builder.__doc__ = f"timm {name} encoder (features_only, random init; weights=PATH loads a file)."
    return builder


@functools.cache
def _resolve(name: str) -> Callable[..., TimmBackbone]:
    timm = _timm()
    if not name or not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(PREFIX + c) for c in close)}?" if close else ""
        raise RegistryError(
            f"unknown backbone '{PREFIX}{name}': timm {timm.__version__} has no network '{name}'.{hint} "
            f"List them with `visionkit models backbone 'timm/*'` (or 'timm/*{name[:6]}*')"
        )
    return _builder(name)


def _names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return list(timm.list_models())


REGISTRY.add_family(
    "backbone",
    Family(PREFIX, _resolve, _names, f"any timm network as an encoder (features_only; needs {INSTALL_HINT})"),
)

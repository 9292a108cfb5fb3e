"""Start from weights someone else trained: load a file into a network's backbone (and neck), report what loaded,
and freeze parts of it.

``weights=PATH`` takes the files people have:

- .safetensors (timm / Hugging Face), read with safetensors (no code can run);
- .pth / .pt / .bin state dicts (torchvision's files, timm's, most research code's), read with
  ``torch.load(weights_only=True)``; a state dict nested under ``state_dict``, ``model``, ``module``, ``ema``, ...
  is found;
- visionkit checkpoints of any task: the backbone and the neck (where names and shapes agree) transfer, the head
  starts fresh.

Tensors are matched by name, after dropping wrapper prefixes (``module.``, ``model.``, ``backbone.``, ``body.``,
...) and treating ``_`` and ``.`` alike (timm's feature extractors flatten ``stem.0`` into ``stem_0``). A network
whose module names differ from the file's (visionkit's staged torchvision backbones) is matched by order
instead: same tensor kind (weight, bias, running_mean, ...) and shape, in the order both register them. The
better of the two is kept and reported. A first convolution built for another number of input channels takes the
file's RGB filters averaged over colour (grey input) or tiled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.errors import CheckpointError, UsageError
from visionkit.models.checkpoint import FORMAT, safe_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# wrappers around a network's own names in files from training code (DDP, EMA, encoders, feature extractors)
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.", "body.", "student.", "teacher.")
# where training code nests the state dict inside a checkpoint, in order of preference
NESTED_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model", "model_state_dict", "module", "teacher")
# parts of a visionkit network a transfer may load; the head is the task's own and always starts fresh
TRANSFER_PARTS = ("backbone.", "neck.")


@dataclass
class WeightFile:
    """Tensors read from a weights file, with what the file says about itself."""

    path: Path
    tensors: dict[str, torch.Tensor]
    layout: str  # "visionkit", "safetensors", "state dict"
    task: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    model_config: dict | None = None


@dataclass
class WeightsReport:
    """What a load did: which network tensors came from which file tensor, which kept their initial values and
    why, and which file tensors went unused."""

    source: str
    layout: str
    match: str = "name"  # "name" or "order"
    loaded: list[tuple[str, str, str]] = field(default_factory=list)  # (network key, file key, how)
    left_at_init: list[tuple[str, str]] = field(default_factory=list)  # (network key, why)
    unused: list[str] = field(default_factory=list)
    backbone_loaded: float = 0.0  # share of the backbone's values (elements) that came from the file
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    norm_source: str = ""

    def summary(self) -> str:
        return (
            f"weights {self.source} ({self.layout}, matched by {self.match}): {len(self.loaded)} tensors loaded, "
            f"{self.backbone_loaded:.1%} of the backbone; {len(self.left_at_init)} left at init; "
            f"{len(self.unused)} in the file unused"
        )

    def text(self) -> str:
        lines = [self.summary()]
        if self.mean is not None:
            lines.append(f"normalisation ({self.norm_source}): mean {list(self.mean)}, std {list(self.std)}")
        lines.append(f"\nloaded ({len(self.loaded)}):")
        lines += [f"  {k} <- {src}{'' if how == 'exact' else f' [{how}]'}" for k, src, how in self.loaded]
        lines.append(f"\nleft at init ({len(self.left_at_init)}):")
        lines += [f"  {k}: {why}" for k, why in self.left_at_init]
        lines.append(f"\nunused in the file ({len(self.unused)}):")
        lines += [f"  {k}" for k in self.unused]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layout": self.layout,
            "match": self.match,
            "backbone_loaded": self.backbone_loaded,
            "loaded": [{"key": k, "from": s, "how": h} for k, s, h in self.loaded],
            "left_at_init": [{"key": k, "why": w} for k, w in self.left_at_init],
            "unused": list(self.unused),
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "norm_source": self.norm_source,
        }

    def write(self, folder: Path) -> list[Path]:
        """weights_report.txt (for people) and weights_report.json (for tools) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        txt, js = folder / "weights_report.txt", folder / "weights_report.json"
        txt.write_text(self.text())
        js.write_text(json.dumps(self.to_dict(), indent=1))
        return [txt, js]


# -- reading ----------------------------------------------------------------------------------------------------------
def _floats(value: Any) -> tuple[float, ...] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None


def _only_tensors(d: dict) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in d.items() if isinstance(v, torch.Tensor)}


def read_weights(path: str | Path) -> WeightFile:
    """Read the tensors of a weights file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist; weights= takes a local file or an https:// URL")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
        except ImportError as e:
            raise UsageError(f"weights '{path}': .safetensors files need safetensors: pip install safetensors") from e
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise CheckpointError(f"weights '{path}' is not a readable .safetensors file: {str(e)[:300]}") from e
        if not tensors:
            raise CheckpointError(f"weights '{path}' holds no tensors")
        return WeightFile(path, tensors, "safetensors", None, _floats(meta.get("mean")), _floats(meta.get("std")))
    obj = safe_load(path, "weights file")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if not isinstance(obj.get("state_dict"), dict):
            raise CheckpointError(f"visionkit checkpoint '{path}' has no state_dict")
        return WeightFile(
            path,
            _only_tensors(obj["state_dict"]),
            "visionkit",
            obj.get("task"),
            _floats(obj.get("mean")),
            _floats(obj.get("std")),
            obj.get("model_config") if isinstance(obj.get("model_config"), dict) else None,
        )
    if not isinstance(obj, dict):
        raise CheckpointError(f"weights '{path}' holds a {type(obj).__name__}, not a state dict (name → tensor)")
    for key in NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and _only_tensors(inner):
            obj = inner
            break
    tensors = _only_tensors(obj)
    if not tensors:
        raise CheckpointError(
            f"weights '{path}' holds no tensors at its top level or under {', '.join(NESTED_KEYS)}; "
            f"save the network's state_dict() to load it"
        )
    return WeightFile(path, tensors, "state dict", None, _floats(obj.get("mean")), _floats(obj.get("std")))


# -- matching ---------------------------------------------------------------------------------------------------------
def _norm(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key.replace("_", ".")


def _adapt(src: torch.Tensor, want: torch.Size) -> torch.Tensor | None:
    """A first conv's RGB filters for another input channel count (mean over colour, repeated); else None."""
    if src.ndim == 4 and len(want) == 4 and src.shape[0] == want[0] and src.shape[2:] == want[2:]:
        return src.float().mean(1, keepdim=True).repeat(1, want[1], 1, 1).to(src.dtype) * (src.shape[1] / want[1])
    return None


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _by_name(targets: dict[str, torch.Tensor], source: dict[str, torch.Tensor], exact: bool):
    """Pairs (target key, source key, how) matched by (normalised) name; mismatched shapes are reported."""
    index: dict[str, str] = {}
    for k in source:
        index.setdefault(k if exact else _norm(k), k)
    pairs, shape_bad = [], {}
    for t, tv in targets.items():
        s = index.get(t if exact else _norm(t))
        if s is None:
            continue
        sv = source[s]
        if sv.shape == tv.shape:
            pairs.append((t, s, "exact" if s == t else "name"))
        elif sv.ndim == 4 and sv.shape[1] == 3 and _adapt(sv, tv.shape) is not None:  # a stem conv, RGB → other
            pairs.append((t, s, f"{sv.shape[1]}->{tv.shape[1]} input channels"))
        else:
            shape_bad[t] = f"shape {list(tv.shape)} but the file's {s} is {list(sv.shape)}"
    return pairs, shape_bad


def _by_order(targets: dict[str, torch.Tensor], source: dict[str, torch.Tensor]):
    """Pairs matched by position: each target tensor takes the next source tensor of the same kind and shape."""
    src = list(source.items())
    pairs, j = [], 0
    for n, (t, tv) in enumerate(targets.items()):
        for k in range(j, len(src)):
            s, sv = src[k]
            if _leaf(s) != _leaf(t):
                continue
            if sv.shape == tv.shape:
                pairs.append((t, s, "order"))
                j = k + 1
                break
            if n < 2 and _adapt(sv, tv.shape) is not None:
                pairs.append((t, s, f"order, {sv.shape[1]}->{tv.shape[1]} input channels"))
                j = k + 1
                break
    return pairs, {}


def _counted(key: str) -> bool:
    return not key.endswith("num_batches_tracked")


def load_weights(
    model: nn.Module, weights: str | Path | WeightFile, strict: bool = True, min_loaded: float = 0.9
) -> WeightsReport:
    """Load ``weights`` into ``model`` (a VisionModel: ``backbone``, ``neck``, ``head``); returns the report.

    Raises CheckpointError when less than ``min_loaded`` of the backbone's values came from the file, unless
    ``strict`` is false (then the report says so and training goes on)."""
    wf = weights if isinstance(weights, WeightFile) else read_weights(weights)
    own = model.state_dict()
    report = WeightsReport(str(wf.path), wf.layout if wf.task is None else f"visionkit {wf.task} checkpoint")
    if wf.layout == "visionkit":
        # a network of this library: the same names; the backbone and neck transfer, the head is the task's own
        targets = {k: v for k, v in own.items() if k.startswith(TRANSFER_PARTS)}
        pairs, shape_bad = _by_name(targets, wf.tensors, exact=True)
        report.match = "name"
    else:
        # a foreign network: only the backbone can come from it; names first, then order if that loads more
        targets = {k[len("backbone.") :]: v for k, v in own.items() if k.startswith("backbone.")}
        named, named_bad = _by_name(targets, wf.tensors, exact=False)
        ordered, _ = _by_order(targets, wf.tensors)

        def size(ps):
            return sum(targets[t].numel() for t, _, _ in ps if _counted(t))

        if size(ordered) > size(named):
            pairs, shape_bad, report.match = ordered, {}, "order"
        else:
            pairs, shape_bad, report.match = named, named_bad, "name"
        pairs = [("backbone." + t, s, h) for t, s, h in pairs]
        shape_bad = {"backbone." + t: w for t, w in shape_bad.items()}
        targets = {"backbone." + t: v for t, v in targets.items()}
    updates = {}
    for t, s, how in pairs:
        sv = wf.tensors[s]
        updates[t] = sv if sv.shape == own[t].shape else _adapt(sv, own[t].shape)
        report.loaded.append((t, s, how))
    used = {s for _, s, _ in pairs}
    for t in targets:
        if t not in updates:
            report.left_at_init.append((t, shape_bad.get(t, "not in the file")))
    for k in own:
        if k not in targets:
            report.left_at_init.append((k, "starts fresh: the task's own part"))
    report.left_at_init.sort(key=lambda kv: list(own).index(kv[0]))
    report.unused = [k for k in wf.tensors if k not in used]
    bb = [k for k in own if k.startswith("backbone.") and _counted(k)]
    total = sum(own[k].numel() for k in bb)
    report.backbone_loaded = sum(own[k].numel() for k in bb if k in updates) / max(total, 1)
    if report.backbone_loaded < min_loaded and strict:
        missing = [k for k, _ in report.left_at_init if k.startswith("backbone.")][:3]
        raise CheckpointError(
            f"weights '{wf.path}' fill only {report.backbone_loaded:.1%} of the backbone (min_loaded={min_loaded:g}); "
            f"e.g. {missing} stay at init and {len(report.unused)} tensors in the file are unused, e.g. "
            f"{report.unused[:3]}. Is the file for this backbone? Pass strict=False to train from it anyway"
        )
    with torch.no_grad():
        for t, v in updates.items():
            own[t].copy_(v.to(own[t].dtype))
    if wf.mean is not None and wf.std is not None:
        report.mean, report.std, report.norm_source = wf.mean, wf.std, "from the weights file"
    elif wf.layout != "visionkit":
        # torchvision's and timm's ImageNet weights were trained on inputs normalised with ImageNet's statistics
        report.mean, report.std, report.norm_source = IMAGENET_MEAN, IMAGENET_STD, "ImageNet's, assumed for this file"
    return report


# -- freezing ---------------------------------------------------------------------------------------------------------
def backbone_stages(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's stages in order, each a list of modules: ``stage_modules()`` when the backbone has it,
    else its ``stages`` (StagedBackbone)."""
    if hasattr(backbone, "stage_modules"):
        return backbone.stage_modules()
    stages = getattr(backbone, "stages", None)
    if isinstance(stages, (nn.ModuleList, nn.Sequential, list)):
        return [[s] for s in stages]
    raise UsageError(
        f"freeze=N needs a backbone made of stages; {type(backbone).__name__} has none. Use freeze=backbone"
    )


def _keep_eval(module: nn.Module, args) -> None:
    # a frozen BatchNorm normalises with the statistics it was loaded with, whatever mode the network is in
    module.training = False


def freeze(model: nn.Module, spec: str | int | None) -> dict[str, Any]:
    """``freeze=backbone`` or ``freeze=N`` (the first N backbone stages): no gradients for their parameters, and
    their BatchNorm layers stay in eval mode during training (running statistics unchanged). Returns what was
    frozen, for the results and the checkpoint."""
    if spec is None or spec == 0:
        return {"freeze": None, "frozen_params": 0}
    backbone = model.backbone
    if spec == "backbone":
        modules = [backbone]
    elif isinstance(spec, int) and not isinstance(spec, bool) and spec > 0:
        stages = backbone_stages(backbone)
        if spec > len(stages):
            raise UsageError(
                f"freeze={spec}: the backbone has {len(stages)} stages; use freeze=1..{len(stages)} or freeze=backbone"
            )
        modules = [m for stage in stages[:spec] for m in stage]
    else:
        raise UsageError(f"bad value freeze={spec!r}: expected freeze=backbone or a number of backbone stages N")
    seen, count = set(), 0
    for root in modules:
        for m in root.modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    p.requires_grad_(False)
                    count += p.numel()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
                m.register_forward_pre_hook(_keep_eval)
    return {"freeze": spec, "frozen_params": count}


def backbone_param_ids(model: nn.Module) -> set[int]:
    """ids of the backbone's parameters (for ``lr_backbone``'s parameter groups)."""
    backbone = getattr(model, "backbone", None)
    return {id(p) for p in backbone.parameters()} if backbone is not None else set()

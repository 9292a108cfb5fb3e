"""What a CAM explains, per task: the network output a target scores, the default layer, and the targets a
prediction gives. A new task adds an adapter with ``@explainer("task")``; shared code never names a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.data.transforms import content_box
from visionkit.errors import UsageError

EXPLAINERS: dict[str, type[Explainer]] = {}


def explainer(task: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: register the adapter for ``task`` (a plugin's task registers its own the same way)."""

    def deco(cls: type[Explainer]) -> type[Explainer]:
        EXPLAINERS[task] = cls
        return cls

    return deco


def explainer_for(task: str) -> Explainer:
    """A fresh adapter for ``task``; a clear error for a task without one."""
    if task not in EXPLAINERS:
        raise UsageError(
            f"explain does not support task '{task}' yet (supported: {', '.join(sorted(EXPLAINERS))}); a task adds "
            f"support with @visionkit.explain.explainer('{task}')"
        )
    return EXPLAINERS[task]()


@dataclass
class Target:
    """One thing to explain in one image. ``score(output)`` maps the wrapped network's output for that image (no
    batch axis) to the scalar whose gradient (or, for Score-CAM, whose value) the CAM follows; ``value`` is that
    score's meaning at the prediction (a probability, a box score, a mean depth), for captions and results."""

    label: str
    score: Callable[[torch.Tensor], torch.Tensor]
    value: float
    layer: str | None = None  # the adapter's layer for this target when layer= is not given (None: the default)


def class_index(spec: Any, names: list[str], task: str, takes: str = "a class name or id") -> int:
    """A class given by id (0, 1, ...) or by name → its index; a clear error listing the classes otherwise (``takes``
    says what ``task`` takes). A number is an id first, then a name (MNIST's classes are named '0'..'9')."""
    if isinstance(spec, str) and spec in names:
        return names.index(spec)
    number = None
    if isinstance(spec, int) and not isinstance(spec, bool):
        number = spec
    elif isinstance(spec, str) and spec.strip().isdigit():
        number = int(spec)
    if number is not None:
        if 0 <= number < len(names):
            return number
        if str(number) in names:
            return names.index(str(number))
    raise UsageError(
        f"bad value target={spec!r}: {task} takes {takes}; classes (id 0..{len(names) - 1}): {', '.join(names)}"
    )


class Explainer:
    """Base adapter: the network as is, whose output is a tensor with the batch first."""

    inside_head = False  # the default layer: the last spatial map before the head (False) or inside it (True)
    max_targets = 10  # default targets per image at most (boxes, classes), so a crowded image stays quick

    def wrap(self, net: nn.Module, task) -> nn.Module:
        """The module the CAM runs: ``net``'s output turned into what the targets score (one tensor)."""
        return net

    def check_target(self, spec: Any, names: list[str]) -> None:
        """Fail on a ``target=`` this task can never take, before any image is read."""

    def prepare(self, net: nn.Module, x: torch.Tensor) -> None:
        """Called once with the network and a first input, for adapters that need its structure."""

    def default_layer(self, spatial: list[tuple[str, tuple[int, ...]]], num_outputs: int) -> str:
        """The last spatial feature map (in execution order) before the head, or (``inside_head``) the head's
        last one before its output layer (the one with ``num_outputs`` channels)."""
        outside = [n for n, _ in spatial if not n.startswith("head")]
        inside = [n for n, s in spatial if n.startswith("head") and s[1] != num_outputs]
        pool = inside if self.inside_head and inside else outside
        if not pool:
            raise UsageError("the model has no spatial feature map to explain; pass layer=")
        return pool[-1]

    def targets(self, output: torch.Tensor, prediction: dict, spec: Any, names: list[str], context) -> list[Target]:
        """The targets of one image: ``output`` is the wrapped network's output (batch of one), ``prediction`` the
        task's post-processed result for the image, ``spec`` the user's ``target=`` (None: the default)."""
        raise NotImplementedError


@explainer("classify")
class ClassifyExplainer(Explainer):
    """target: the predicted class (default) or a class name/id; score: its logit."""

    def check_target(self, spec, names):
        if spec is not None:
            class_index(spec, names, "classify")

    def targets(self, output, prediction, spec, names, context):
        k = int(output[0].argmax()) if spec is None else class_index(spec, names, "classify")
        prob = float(output[0].float().softmax(0)[k])
        return [Target(names[k], lambda o, k=k: o[k], prob)]


@explainer("segment")
class SegmentExplainer(Explainer):
    """target: a class name/id (default: each class in the prediction, most pixels first, background only when
    nothing else is); score: the sum of that class's logits over the image's pixels predicted as it (over all
    of them when none are)."""

    inside_head = True

    def check_target(self, spec, names):
        if spec is not None:
            class_index(spec, names, "segment")

    def targets(self, output, prediction, spec, names, context):
        if spec is None:
            present = sorted(prediction["classes"], key=lambda a: -a["pixels"])
            chosen = [a["class"] for a in present if a["class"] != 0] or [a["class"] for a in present[:1]]
            chosen = chosen[: self.max_targets]
        else:
            chosen = [class_index(spec, names, "segment")]
        content = torch.zeros(output.shape[-2:], dtype=torch.bool, device=output.device)
        rows, cols = content_box(context["shape"], context["scale"], context["pad"])
        content[rows, cols] = True  # the letterbox's padding is no part of the image
        pred = output[0].argmax(0)
        targets = []
        for k in chosen:
            region = (pred == k) & content
            fraction = float(region.sum()) / float(content.sum())
            weights = (region if region.any() else content).float()
            targets.append(Target(names[k], lambda o, k=k, m=weights: (o[k] * m).sum(), fraction))
        return targets


class DepthValues(nn.Module):
    """A depth network whose output is the values predict reports (B, 1, H, W): metres for a metric or calibrated
    model, relative inverse depth otherwise (the task's own conversion of the raw head output)."""

    def __init__(self, net: nn.Module, task):
        super().__init__()
        self.net = net
        self.task = task  # a plain object, not a module: its depth_values reads the bound head's output kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.depth_values(self.net(x))[:, None]


def _parse_region(spec: Any) -> tuple[float, float, float, float]:
    parts = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise UsageError(
            f"bad value target={spec!r}: depth takes a region x1,y1,x2,y2 in image pixels, e.g. target=0,0,64,48 "
            f"(default: the whole image)"
        ) from None
    return x1, y1, x2, y2


@explainer("depth")
class DepthExplainer(Explainer):
    """target: a region x1,y1,x2,y2 in the original image's pixels (default: the whole image); score: the mean of
    the predicted depth values over it (metres, or relative inverse depth: larger = nearer)."""

    inside_head = True

    def wrap(self, net, task):
        return DepthValues(net, task)

    def check_target(self, spec, names):
        if spec is not None:
            _parse_region(spec)

    def targets(self, output, prediction, spec, names, context):
        h0, w0 = context["shape"]
        x1, y1, x2, y2 = (0.0, 0.0, float(w0), float(h0)) if spec is None else _parse_region(spec)
        if not (0 <= x1 < x2 <= w0 and 0 <= y1 < y2 <= h0):
            raise UsageError(
                f"bad value target={spec!r}: depth takes a region x1,y1,x2,y2 in image pixels inside the "
                f"{w0}×{h0} image, e.g. target=0,0,{w0 // 2},{h0 // 2} (default: the whole image)"
            )
        (sx, sy), (left, top) = context["scale"], context["pad"]
        h, w = output.shape[-2:]
        c1, r1 = min(int(x1 * sx + left), w - 1), min(int(y1 * sy + top), h - 1)
        c2, r2 = max(int(np.ceil(x2 * sx + left)), c1 + 1), max(int(np.ceil(y2 * sy + top)), r1 + 1)
        value = float(output[0, 0, r1:r2, c1:c2].float().mean())
        label = "image" if spec is None else f"region {x1:g},{y1:g},{x2:g},{y2:g}"
        return [Target(label, lambda o, r=(r1, r2, c1, c2): o[0, r[0] : r[1], r[2] : r[3]].mean(), value)]


class DecodedDetector(nn.Module):
    """A detector whose output is one tensor per image: (N anchors, 4 box x1 y1 x2 y2 in input pixels + C class
    scores in 0..1), the head's own decoding before NMS."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = self.net.head.decode(self.net(x))
        return torch.cat([boxes, scores], -1)


def box_iou(boxes: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """IoU of each of ``boxes`` (N, 4) with one ``box`` (4,), all x1 y1 x2 y2."""
    lt = torch.maximum(boxes[:, :2], box[:2])
    rb = torch.minimum(boxes[:, 2:], box[2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(1)
    return inter / (area + (box[2:] - box[:2]).clamp(min=0).prod() - inter + 1e-9)


@explainer("detect")
class DetectExplainer(Explainer):
    """target: every detected box (default, at most 10), a box index, or a class name (its boxes); score: the
    box's class score summed over the anchors whose decoded box overlaps it (IoU >= 0.5): the cells that made the
    detector fire there. Default layer: per box, the neck output of the level most of that score comes from.
    EigenCAM ignores the target (one map per image: the default layer's first principal component)."""

    anchor_iou = 0.5

    def __init__(self):
        self.level_layers: list[str] = []  # module path of the feature map each head level reads
        self.level_sizes: list[int] = []  # anchors per level, in the order the head concatenates them

    def prepare(self, net, x):
        """Find the module whose output each head level reads: a box's gradient reaches only its own level's map
        (and what lies below it), so the stride-32 map, last in execution order, is blank for a box found at
        stride 8."""
        produced: dict[int, str] = {}
        hooks = [
            m.register_forward_hook(lambda _m, _i, out, name=name: produced.__setitem__(id(out), name))
            for name, m in net.named_modules()
            if name and not name.startswith("head")
        ]  # the outermost module that returns a tensor finishes last and keeps its name
        inputs: list[torch.Tensor] = []
        hooks.append(net.head.register_forward_pre_hook(lambda _m, args: inputs.extend(args[0])))
        try:
            with torch.no_grad():
                net(x)
        finally:
            for h in hooks:
                h.remove()
        if all(id(f) in produced for f in inputs):
            self.level_layers = [produced[id(f)] for f in inputs]
            self.level_sizes = [f.shape[-2] * f.shape[-1] for f in inputs]

    def _level_layer(self, weights: torch.Tensor) -> str | None:
        """The layer of the level holding most of a box's anchor weight."""
        if not self.level_sizes or sum(self.level_sizes) != len(weights):
            return None
        per_level = [float(chunk.sum()) for chunk in torch.split(weights, self.level_sizes)]
        return self.level_layers[int(np.argmax(per_level))]

    def wrap(self, net, task):
        if getattr(net, "head", None) is None or not hasattr(net.head, "decode"):
            raise UsageError("explain needs a PyTorch detector whose head decodes boxes (a .pt checkpoint)")
        return DecodedDetector(net)

    def check_target(self, spec, names):
        if spec is not None and not (isinstance(spec, int) and not isinstance(spec, bool)):
            class_index(spec, names, "detect", "a box index (0, 1, ...) or a class name")

    def targets(self, output, prediction, spec, names, context):
        dets = prediction["detections"]
        if spec is None:
            chosen = list(range(min(len(dets), self.max_targets)))
        elif isinstance(spec, int) and not isinstance(spec, bool):
            if not 0 <= spec < len(dets):
                found = f"{len(dets)} detection(s) (box 0..{len(dets) - 1})" if dets else "no detections"
                raise UsageError(
                    f"bad value target={spec}: detect takes a box index or a class name, and this image has "
                    f"{found} at the current conf=; lower conf= or give a class name"
                )
            chosen = [spec]
        else:
            k = class_index(spec, names, "detect", "a box index (0, 1, ...) or a class name")
            chosen = [i for i, d in enumerate(dets) if d["class"] == k]
        (sx, sy), (left, top) = context["scale"], context["pad"]
        decoded = output[0, :, :4].detach()
        targets = []
        for i in chosen:
            d = dets[i]
            x1, y1, x2, y2 = d["box"]
            box = torch.tensor([x1 * sx + left, y1 * sy + top, x2 * sx + left, y2 * sy + top], device=output.device)
            iou = box_iou(decoded, box)
            anchors = iou >= self.anchor_iou
            if not anchors.any():  # a box clipped at the border may overlap its own anchor less: take the best one
                anchors = iou == iou.max()
            c = 4 + d["class"]
            weights = anchors.float()
            level = self._level_layer(weights * output[0, :, c].detach())
            score = lambda o, a=weights, c=c: (o[:, c] * a).sum()  # noqa: E731
            targets.append(Target(f"{i}: {d['name']}", score, d["score"], level))
        return targets

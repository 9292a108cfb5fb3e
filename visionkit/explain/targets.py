"""What a CAM explains, per task: the network output a target scores, the default layer, and the targets a
prediction gives. A new task adds an adapter with ``@explainer("task")``; nothing else changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.errors import UsageError

EXPLAINERS: dict[str, type[Explainer]] = {}


def explainer(task: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Register the adapter class for ``task``."""

    def deco(cls: type[Explainer]) -> type[Explainer]:
        EXPLAINERS[task] = cls
        return cls

    return deco


def explainer_for(task: str) -> Explainer:
    if task not in EXPLAINERS:
        raise UsageError(f"explain does not support task '{task}' yet (supported: {', '.join(sorted(EXPLAINERS))})")
    return EXPLAINERS[task]()


@dataclass
class Target:
    """One thing to explain in one image: ``score(output)`` maps the wrapped network's output for that image to
    the scalar whose gradient (or, for Score-CAM, whose value) the CAM follows."""

    label: str
    score: Callable[[torch.Tensor], torch.Tensor]
    value: float  # the score at the prediction, for the overlay's caption


def class_index(spec: Any, names: list[str], what: str) -> int:
    """A class given by id or name → its index; a clear error listing the classes otherwise."""
    if isinstance(spec, int) and not isinstance(spec, bool) and 0 <= spec < len(names):
        return spec
    if isinstance(spec, str) and spec in names:
        return names.index(spec)
    raise UsageError(f"bad value target={spec!r}: {what} takes a class name or id; classes: {', '.join(names)}")


class Explainer:
    """Base adapter: the network as is, whose output is a tensor with the batch first."""

    inside_head = False  # the default layer: the last spatial map before the head (False) or inside it (True)

    def wrap(self, net: nn.Module) -> nn.Module:
        return net

    def default_layer(self, spatial: list[tuple[str, tuple[int, ...]]], num_outputs: int) -> str:
        """The last spatial feature map (in execution order) before the head, or inside it before its output."""
        outside = [n for n, _ in spatial if not n.startswith("head")]
        inside = [n for n, s in spatial if n.startswith("head") and s[1] != num_outputs]
        pool = inside if self.inside_head and inside else outside
        if not pool:
            raise UsageError("the model has no spatial feature map to explain; pass layer=")
        return pool[-1]

    def targets(self, output: torch.Tensor, result: dict, spec: Any, names: list[str], context: Any) -> list[Target]:
        raise NotImplementedError


@explainer("classify")
class ClassifyExplainer(Explainer):
    """target: the predicted class (default) or a class name/id; score: its logit."""

    def targets(self, output, result, spec, names, context):
        k = int(output[0].argmax()) if spec is None else class_index(spec, names, "classify")
        prob = float(output[0].float().softmax(0)[k])
        return [Target(names[k], lambda o, k=k: o[k], prob)]


@explainer("segment")
class SegmentExplainer(Explainer):
    """target: a class (default: the predicted class covering most pixels, background last); score: the sum of
    that class's logits over the pixels predicted as it (all pixels when none are)."""

    inside_head = True

    def targets(self, output, result, spec, names, context):
        pred = output[0].argmax(0)
        if spec is None:
            counts = torch.bincount(pred.flatten(), minlength=len(names))
            if counts[1:].sum() > 0:  # background (class 0) only when nothing else was found
                counts[0] = 0
            k = int(counts.argmax())
        else:
            k = class_index(spec, names, "segment")
        region = (pred == k).float()
        if region.sum() == 0:
            region = torch.ones_like(region)
        fraction = float((pred == k).float().mean())
        return [Target(names[k], lambda o, k=k, m=region.detach(): (o[k] * m).sum(), fraction)]


def _region(spec: Any, context: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """target=x1,y1,x2,y2 in original image pixels → the same box in the letterboxed input."""
    h0, w0 = context["shape"]
    if spec is None:
        x1, y1, x2, y2 = 0.0, 0.0, float(w0), float(h0)
    else:
        parts = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
        try:
            x1, y1, x2, y2 = (float(p) for p in parts)
        except (TypeError, ValueError):
            x1 = y1 = x2 = y2 = float("nan")
        if not (0 <= x1 < x2 <= w0 and 0 <= y1 < y2 <= h0):
            raise UsageError(
                f"bad value target={spec!r}: depth takes a region x1,y1,x2,y2 in image pixels inside the "
                f"{w0}×{h0} image, e.g. target=0,0,{w0 // 2},{h0 // 2} (default: the whole image)"
            )
    (sx, sy), (left, top) = context["scale"], context["pad"]
    h, w = shape
    box = (int(x1 * sx + left), int(y1 * sy + top), int(np.ceil(x2 * sx + left)), int(np.ceil(y2 * sy + top)))
    return max(box[0], 0), max(box[1], 0), min(max(box[2], box[0] + 1), w), min(max(box[3], box[1] + 1), h)


@explainer("depth")
class DepthExplainer(Explainer):
    """target: a region x1,y1,x2,y2 in image pixels (default: the whole image); score: the mean of the depth
    output over it (inverse depth for relative models, log-depth for metric ones)."""

    inside_head = True

    def targets(self, output, result, spec, names, context):
        x1, y1, x2, y2 = _region(spec, context, tuple(output.shape[-2:]))
        label = "image" if spec is None else f"region {x1},{y1},{x2},{y2}"
        value = float(output[0, 0, y1:y2, x1:x2].float().mean())
        return [Target(label, lambda o, r=(x1, y1, x2, y2): o[0, r[1] : r[3], r[0] : r[2]].mean(), value)]


class DecodedDetector(nn.Module):
    """A detector whose output is one tensor per image: (N anchors, 4 box xyxy in input pixels + C scores)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = self.net.head.decode(self.net(x))
        return torch.cat([boxes, scores], -1)


def _iou(boxes: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(boxes[:, :2], box[:2])
    rb = torch.minimum(boxes[:, 2:], box[2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(1)
    return inter / (area + (box[2:] - box[:2]).prod() - inter + 1e-9)


@explainer("detect")
class DetectExplainer(Explainer):
    """target: every detected box (default), a box index, or a class name/id (its boxes); score: the box's class
    score summed over the anchors whose decoded box overlaps it (IoU >= 0.5): what made the detector fire there.
    EigenCAM ignores the target (one map per image, the feature map's first principal component)."""

    max_boxes = 10

    def wrap(self, net):
        return DecodedDetector(net)

    def targets(self, output, result, spec, names, context):
        dets = result["detections"]
        (sx, sy), (left, top) = context["scale"], context["pad"]
        if spec is None:
            chosen = list(range(min(len(dets), self.max_boxes)))
        elif isinstance(spec, int) and not isinstance(spec, bool):
            if not 0 <= spec < len(dets):
                raise UsageError(
                    f"bad value target={spec}: the image has {len(dets)} detection(s) (0..{len(dets) - 1}); "
                    f"or give a class name"
                )
            chosen = [spec]
        else:
            k = class_index(spec, names, "detect")
            chosen = [i for i, d in enumerate(dets) if d["class"] == k]
        targets = []
        for i in chosen:
            d = dets[i]
            x1, y1, x2, y2 = d["box"]
            box = torch.tensor([x1 * sx + left, y1 * sy + top, x2 * sx + left, y2 * sy + top], device=output.device)
            anchors = (_iou(output[0, :, :4].detach(), box) >= 0.5).float()
            c = 4 + d["class"]
            targets.append(Target(f"{i}: {d['name']}", lambda o, a=anchors, c=c: (o[:, c] * a).sum(), d["score"]))
        return targets

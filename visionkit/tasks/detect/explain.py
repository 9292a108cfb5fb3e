"""Explaining a detector: one box's class score over the anchors that found it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from visionkit.errors import UsageError
from visionkit.tasks.explain_base import Explainer, Target, class_index


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


class DetectExplainer(Explainer):
    """target: every detected box (default, at most 10), a box index, or a class name (its boxes); score: the
    box's class score summed over the anchors whose decoded box overlaps it (IoU >= 0.5): the cells that made the
    detector fire there. Default layer: per box, the neck output of the level most of that score comes from.
    EigenCAM ignores the target (one map per image: the default layer's first principal component). LIME's score of
    a perturbed copy: the box found again, the highest score of its class among the anchors whose decoded box
    overlaps the target box with IoU >= 0.5 (0 when none does): at the unperturbed image that is the box's own
    score, and no NMS or conf= threshold makes it jump."""

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

    def found_again(self, output: torch.Tensor, box: torch.Tensor, c: int) -> torch.Tensor:
        """The best class-``c`` score (column ``c`` of one image's decoded output) among the anchors whose box
        overlaps ``box`` (input pixels) with IoU >= anchor_iou; 0 when none does."""
        near = box_iou(output[:, :4], box) >= self.anchor_iou
        return output[near, c].max() if near.any() else output.new_zeros(())

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
            again = lambda o, b=box, c=c: self.found_again(o, b, c)  # noqa: E731
            targets.append(Target(f"{i}: {d['name']}", score, d["score"], level, again))
        return targets

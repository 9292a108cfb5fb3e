"""Explaining a depth model: the mean predicted value over a region."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.errors import UsageError
from visionkit.tasks.explain_base import Explainer, Target


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

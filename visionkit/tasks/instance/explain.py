"""Explaining an instance segmenter: per object, a map of what drove its box score and its mask together."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError
from visionkit.tasks.detect.explain import DetectExplainer
from visionkit.tasks.explain_base import Target


class DecodedInstances(nn.Module):
    """One tensor per image, as the CAM libraries take: N anchor rows (box x1 y1 x2 y2 in input pixels, C class
    scores, M mask coefficients), then one row per prototype pixel (row-major) holding its M prototype values in
    the last M columns (zeros before them)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.net(x)
        boxes, scores = self.net.head.decode(outputs)
        _, coef, protos = self.net.head.split(outputs)
        anchors = torch.cat([boxes, scores, coef], -1)
        pixels = protos.flatten(2).transpose(1, 2)  # (B, Hp·Wp, M)
        pixels = torch.cat([pixels.new_zeros(*pixels.shape[:2], anchors.shape[-1] - pixels.shape[-1]), pixels], -1)
        return torch.cat([anchors, pixels], 1)


class InstanceExplainer(DetectExplainer):
    """target: every object (default, at most 10), an object index, or a class name (its objects). score: the
    detector's box score (the object's class score over the anchors that found it, as for detect) times its mask
    score (the mean mask probability of its best anchor over the object's predicted pixels), so the map shows what
    made the network find the object and paint its mask; the product keeps a barely trained mask branch from
    drowning the box's evidence. EigenCAM ignores the target; LIME reads the box found again, as for detect."""

    def wrap(self, net, task):
        if getattr(net, "head", None) is None or not hasattr(net.head, "split"):
            raise UsageError("explain needs a PyTorch instance segmenter (a .pt checkpoint)")
        self.num_masks, self.strides = net.head.num_masks, net.head.strides
        return DecodedInstances(net)

    def targets(self, output, prediction, spec, names, context):
        h_in, w_in = context["input_hw"]
        n = sum(-(-h_in // s) * -(-w_in // s) for s in self.strides)  # anchor rows; prototype rows follow
        box_targets = super().targets(output[:, :n], prediction, spec, names, context)
        ph, pw = self._proto_shape(output, n, context)
        masks = prediction["_masks"]
        (sx, sy), (left, top) = context["scale"], context["pad"]
        out = []
        for t in box_targets:
            i = int(t.label.split(":")[0])
            # the object's predicted pixels, moved into the letterboxed input, at the prototypes' resolution
            region = torch.zeros(1, 1, h_in, w_in)
            m = torch.from_numpy(masks[i]).float()[None, None]
            hh, ww = max(1, round(m.shape[-2] * sy)), max(1, round(m.shape[-1] * sx))
            region[..., top : top + hh, left : left + ww] = F.interpolate(m, size=(hh, ww), mode="nearest")
            weight = F.adaptive_avg_pool2d(region, (ph, pw)).flatten().to(output.device)
            anchor = self._best_anchor(output[0, :n], t, 4 + prediction["detections"][i]["class"])
            box_score = t.score
            mask_score = lambda o, a=anchor, w=weight, n=n: self._mask_score(o, a, w, n)  # noqa: E731
            score = lambda o, b=box_score, s=mask_score: b(o[:n]) * s(o)  # noqa: E731
            lime = t.lime_score
            out.append(Target(t.label, score, t.value, t.layer, lambda o, f=lime, n=n: f(o[:n])))
        return out

    def _proto_shape(self, output, n: int, context) -> tuple[int, int]:
        h_in, w_in = context["input_hw"]
        pixels = output.shape[1] - n
        ratio = (h_in * w_in / pixels) ** 0.5
        return round(h_in / ratio), round(w_in / ratio)

    @staticmethod
    def _best_anchor(anchors: torch.Tensor, target: Target, column: int) -> int:
        """Of the anchors the target's box score sums (those with a gradient), the one scoring its class highest:
        the anchor whose coefficients made the object's mask."""
        probe = anchors.detach().clone().requires_grad_(True)
        target.score(probe).backward()
        counted = probe.grad.abs().sum(1) > 0
        return int(
            torch.where(
                counted, anchors[:, column].detach(), torch.full_like(counted, -1.0, dtype=anchors.dtype)
            ).argmax()
        )

    def _mask_score(self, output: torch.Tensor, anchor: int, weight: torch.Tensor, n: int) -> torch.Tensor:
        m = self.num_masks
        coef = output[anchor, -m:]
        probs = torch.sigmoid(output[n:, -m:] @ coef)
        return (probs * weight).sum() / weight.sum().clamp(min=1e-6)

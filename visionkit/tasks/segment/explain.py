"""Explaining a segmenter: a class's logits over its pixels."""

from __future__ import annotations

import torch

from visionkit.data.transforms import content_box
from visionkit.tasks.explain_base import Explainer, Target, class_index


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

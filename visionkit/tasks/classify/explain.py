"""Explaining a classifier: the logit of a class."""

from __future__ import annotations

from visionkit.tasks.explain_base import Explainer, Target, class_index


class ClassifyExplainer(Explainer):
    """target: the predicted class (default) or a class name/id; score: its logit (CAMs) or its softmax probability
    (LIME, as the paper explains a classifier's probability)."""

    gallery = True

    def check_target(self, spec, names):
        if spec is not None:
            class_index(spec, names, "classify")

    def targets(self, output, prediction, spec, names, context):
        k = int(output[0].argmax()) if spec is None else class_index(spec, names, "classify")
        prob = float(output[0].float().softmax(0)[k])
        return [Target(names[k], lambda o, k=k: o[k], prob, lime_score=lambda o, k=k: o.float().softmax(0)[k])]

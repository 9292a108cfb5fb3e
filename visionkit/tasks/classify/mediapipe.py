"""A classifier as a MediaPipe ImageClassifier: one (1, C) output of probabilities."""

from __future__ import annotations

import numpy as np
import torch

from visionkit.export import tflite_metadata
from visionkit.registry import register
from visionkit.runtime.mediapipe_kind import MediaPipeKind


@register("mediapipe_kind", "classifier")
class ClassifierKind(MediaPipeKind):
    name = "classifier"

    def create(self, vision, base, mode, score_threshold, max_results):
        return vision.ImageClassifier.create_from_options(
            vision.ImageClassifierOptions(base_options=base, running_mode=mode, max_results=-1)
        )

    def run(self, task, image, timestamp_ms, shape, runner):
        probs = np.zeros(runner.num_classes, np.float32)
        r = task.classify(image) if timestamp_ms is None else task.classify_for_video(image, timestamp_ms)
        for c in r.classifications[0].categories:
            probs[c.index] = c.score
        return {"probs": probs}

    def outputs(self, results, metadata):
        return torch.from_numpy(np.stack([r["probs"] for r in results])).clamp(min=1e-12).log()

    def write_metadata(self, model, names):
        return tflite_metadata.write_classifier(model, names)

    def compare(self, got, ref, size, metadata):
        probs = ref[0].numpy()
        k = min(5, len(probs))
        want, have = np.argsort(-probs, kind="stable")[:k], np.argsort(-got["probs"], kind="stable")[:k]
        problems = []
        diff = float(np.abs(got["probs"] - probs).max())
        if diff > 1e-3:
            problems.append(f"class scores differ by {diff:.2g} (> 1e-3)")
        # near-equal scores may swap places: compare the classes whose scores are not tied with a neighbour
        if not np.array_equal(want, have) and not np.allclose(probs[want], probs[have], atol=1e-3):
            problems.append(f"top-{k} classes {have.tolist()} instead of {want.tolist()}")
        return problems

"""A depth model as a one-channel MediaPipe ImageSegmenter with activation NONE: ``confidence_masks[0]`` carries
the predicted values unchanged (MediaPipe has no depth Task)."""

from __future__ import annotations

import numpy as np
import torch

from visionkit.export import tflite_metadata
from visionkit.registry import register
from visionkit.tasks.segment.mediapipe import SegmenterKind


@register("mediapipe_kind", "value_map")
class ValueMapKind(SegmenterKind):
    name = "value_map"
    category_mask = False

    def run(self, task, image, timestamp_ms, shape, runner):
        _, masks = self.masks(task, image, timestamp_ms, shape)
        return {"values": masks[0].astype(np.float32)}

    def outputs(self, results, metadata):
        return torch.from_numpy(np.stack([r["values"] for r in results]))

    def write_metadata(self, model, names):
        return tflite_metadata.write_segmenter(model, None, "NONE")

    def compare(self, got, ref, size, metadata):
        want = ref[0, ..., 0].numpy()
        diff = float(np.abs(got["values"] - want).max()) / max(float(np.abs(want).max()), 1e-12)
        return [] if diff <= 1e-3 else [f"values differ by {diff:.2g} relative (> 1e-3)"]

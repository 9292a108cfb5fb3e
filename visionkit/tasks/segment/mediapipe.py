"""A segmenter as a MediaPipe ImageSegmenter: one (1, H, W, C) output of class logits, SOFTMAX in the metadata
(confidence masks are probabilities, the category mask the argmax)."""

from __future__ import annotations

import numpy as np
import torch

from visionkit.export import tflite_metadata
from visionkit.registry import register
from visionkit.runtime.mediapipe_kind import MediaPipeKind


@register("mediapipe_kind", "segmenter")
class SegmenterKind(MediaPipeKind):
    name = "segmenter"
    category_mask = True  # MediaPipe also returns the argmax per pixel

    def create(self, vision, base, mode, score_threshold, max_results):
        return vision.ImageSegmenter.create_from_options(
            vision.ImageSegmenterOptions(
                base_options=base,
                running_mode=mode,
                output_category_mask=self.category_mask,
                output_confidence_masks=True,
            )
        )

    def masks(self, task, image, timestamp_ms, shape):
        r = task.segment(image) if timestamp_ms is None else task.segment_for_video(image, timestamp_ms)
        return r, np.stack([m.numpy_view().reshape(shape) for m in r.confidence_masks])

    def run(self, task, image, timestamp_ms, shape, runner):
        r, masks = self.masks(task, image, timestamp_ms, shape)
        return {"probs": masks.astype(np.float32), "classes": r.category_mask.numpy_view().reshape(shape)}

    def outputs(self, results, metadata):
        return torch.from_numpy(np.stack([r["probs"] for r in results])).clamp(min=1e-12).log()

    def write_metadata(self, model, names):
        return tflite_metadata.write_segmenter(model, names, "SOFTMAX")

    def compare(self, got, ref, size, metadata):
        agree = float((got["classes"] == ref[0].numpy().argmax(-1)).mean())
        return [] if agree >= 0.999 else [f"category mask agrees with PyTorch's argmax on {agree:.2%} of pixels"]

"""The MediaPipe facet of a task: one MediaPipe Task family (an ImageClassifier, an ImageSegmenter, an
ObjectDetector, ...) seen from visionkit. Subclasses live in the task folders and are registered as kind
``mediapipe_kind`` under the name stored in each .tflite file's visionkit record (``kind``); the MediaPipe backend
and the MediaPipe writer find them there and never name a task or branch on a kind."""

from __future__ import annotations

from typing import Any

import numpy as np


class MediaPipeKind:
    """How one kind of .tflite file is made, run and read back. ``name`` is the registered name."""

    name = ""

    def create(self, vision, base, mode, score_threshold: float, max_results: int):
        """The MediaPipe Task (``vision`` is mediapipe.tasks.python.vision, ``base`` its BaseOptions)."""
        raise NotImplementedError

    def run(self, task, image, timestamp_ms: int | None, shape: tuple[int, int], runner) -> dict[str, np.ndarray]:
        """One image (a mediapipe.Image of ``shape`` (h, w)) → NumPy arrays; ``timestamp_ms`` is set in VIDEO mode.
        ``runner`` gives ``num_classes`` and ``class_ids`` (name → index)."""
        raise NotImplementedError

    def outputs(self, results: list[dict[str, np.ndarray]], metadata: dict[str, Any]):
        """Per-image ``run`` results → the batch outputs the task post-processes (as it reads an ONNX file's)."""
        raise NotImplementedError

    def file_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The file's metadata as the task reads it (e.g. a detector reports the NMS MediaPipe runs itself)."""
        return metadata

    def runner_options(self, metadata: dict[str, Any]) -> tuple[float, int]:
        """(score_threshold, max_results) the Task is created with for a file with this metadata."""
        return 0.0, -1

    def write_metadata(self, model: bytes, names: list[str]) -> bytes:
        """``model`` with the MediaPipe metadata this Task reads (labels, normalisation, output layout)."""
        raise NotImplementedError

    def compare(self, got: dict[str, np.ndarray], ref, size: tuple[int, int], metadata: dict[str, Any]) -> list[str]:
        """What differs between MediaPipe's ``got`` and PyTorch's graph output ``ref`` on one image; empty when
        they agree within the format's tolerances."""
        raise NotImplementedError

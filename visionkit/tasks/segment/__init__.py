"""Semantic segmentation (U-Net on any registered backbone)."""

from visionkit.tasks.segment import (
    mediapipe,  # noqa: F401  (registers its MediaPipe kind)
    task,  # noqa: F401
)

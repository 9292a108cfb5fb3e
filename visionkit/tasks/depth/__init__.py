"""Monocular depth (DPT/MiDaS-style head on any backbone)."""

from visionkit.tasks.depth import (
    mediapipe,  # noqa: F401  (registers its MediaPipe kind)
    task,  # noqa: F401
)

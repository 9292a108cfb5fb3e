"""Object detection (registers the `detect` task)."""

from visionkit.tasks.detect import (
    mediapipe,  # noqa: F401  (registers its MediaPipe kind)
    task,  # noqa: F401
)

"""Image classification (registers the `classify` task)."""

from visionkit.tasks.classify import (
    mediapipe,  # noqa: F401  (registers its MediaPipe kind)
    task,  # noqa: F401
)
from visionkit.tasks.classify.metrics import ClassifyMetrics  # noqa: F401
from visionkit.tasks.classify.task import ClassifyTask  # noqa: F401

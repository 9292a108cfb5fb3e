"""Object detection (registers the `detect` task)."""

from visionkit.tasks.detect import task  # noqa: F401

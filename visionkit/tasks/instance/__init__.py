"""Instance segmentation (registers the `instance` task)."""

from visionkit.tasks.instance import task  # noqa: F401

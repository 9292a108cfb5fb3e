"""Semantic segmentation (U-Net on any registered backbone)."""

from visionkit.tasks.segment import task  # noqa: F401

"""Monocular depth (DPT/MiDaS-style head on any backbone)."""

from visionkit.tasks.depth import task  # noqa: F401

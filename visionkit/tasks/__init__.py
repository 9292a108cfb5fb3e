"""Tasks (kind ``task``): each knows its data view, default model, loss, metrics, post-processing and plots."""

from visionkit.tasks import classify, depth, detect, instance, segment  # noqa: F401
from visionkit.tasks.base import Task  # noqa: F401

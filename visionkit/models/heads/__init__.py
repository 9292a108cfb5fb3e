"""Built-in heads; importing this package registers them."""

from visionkit.models.heads import classify, detect  # noqa: F401

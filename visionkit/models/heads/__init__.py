"""Built-in heads; importing this package registers them."""

from visionkit.models.heads import classify, detect, unet  # noqa: F401

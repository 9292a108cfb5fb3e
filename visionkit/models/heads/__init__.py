"""Built-in heads; importing this package registers them."""

from visionkit.models.heads import classify, detect, dpt, unet  # noqa: F401

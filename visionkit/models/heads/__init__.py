"""Built-in heads; importing this package registers them."""

from visionkit.models.heads import classify, detect, detect_e2e, dpt, instance, unet  # noqa: F401

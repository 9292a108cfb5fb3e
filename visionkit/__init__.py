"""visionkit: train, validate, predict and export vision models built from a plugin registry."""

__version__ = "0.1.0"

from visionkit.registry import REGISTRY, available, build, register  # noqa: E402

# importing these registers the built-in components
from visionkit import models, tasks  # noqa: E402,F401
from visionkit.api import Model  # noqa: E402

__all__ = ["Model", "REGISTRY", "available", "build", "register", "__version__"]

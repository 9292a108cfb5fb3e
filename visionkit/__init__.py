"""visionkit: train, validate, predict and export vision models built from a plugin registry."""

from visionkit.registry import REGISTRY, available, build, register
from visionkit.version import __version__

__all__ = ["Model", "REGISTRY", "available", "build", "register", "__version__"]


def _load_builtins() -> None:
    # importing these registers the built-in backbones, necks, heads, presets, tasks, trackers and export writers
    import visionkit.export.writers  # noqa: F401
    import visionkit.models  # noqa: F401
    import visionkit.runs.loggers  # noqa: F401
    import visionkit.tasks  # noqa: F401
    import visionkit.track  # noqa: F401


REGISTRY.add_builtin_loader(_load_builtins)


def __getattr__(name: str):
    # Model pulls in torch: import it on first use so `import visionkit` and `visionkit cfg` stay instant
    if name == "Model":
        from visionkit.api import Model

        return Model
    raise AttributeError(f"module 'visionkit' has no attribute '{name}'")

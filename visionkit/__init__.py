"""visionkit: train, validate, predict and export vision models built from a plugin registry."""

import os

# OpenMP threads that wait for work sleep instead of spinning. Spinning threads keep a core busy between operations:
# on a machine with other work (a second process, a test suite) the spinning fights it for the cores and a 2-core
# training ran 10-80x slower; idle, sleeping costs ~7 % (docs/performance.md). OpenMP reads this once, when torch
# is first imported, so it is set here, before anything imports torch; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from visionkit.registry import REGISTRY, available, build, register
from visionkit.version import __version__

__all__ = ["Model", "REGISTRY", "available", "build", "register", "__version__"]


def _load_builtins() -> None:
    # importing these registers the built-in backbones, necks, heads, presets, tasks, trackers, export writers and
    # the backends that run exported files
    import visionkit.export.writers  # noqa: F401
    import visionkit.models  # noqa: F401
    import visionkit.runs.loggers  # noqa: F401
    import visionkit.runtime.backends  # noqa: F401
    import visionkit.tasks  # noqa: F401
    import visionkit.track  # noqa: F401


REGISTRY.add_builtin_loader(_load_builtins)


def __getattr__(name: str):
    # Model pulls in torch: import it on first use so `import visionkit` and `visionkit cfg` stay instant
    if name == "Model":
        from visionkit.api import Model

        return Model
    raise AttributeError(f"module 'visionkit' has no attribute '{name}'")

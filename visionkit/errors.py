"""Errors a user can cause. The CLI prints them without a traceback."""


class VisionkitError(Exception):
    """Base class for user-facing errors (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(VisionkitError):
    """A bad command line, key or value (exit code 2 in the CLI)."""

    exit_code = 2


class RegistryError(UsageError):
    """An unknown or duplicate component name."""


class DataError(VisionkitError):
    """A dataset that is missing, empty or malformed."""


class CheckpointError(VisionkitError):
    """A checkpoint that is missing, unsafe, or made for another task."""


class ExportError(VisionkitError):
    """An exported file that does not match PyTorch, or a model a format cannot hold."""

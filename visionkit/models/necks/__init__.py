"""Built-in necks; importing this package registers them."""

from visionkit.models.necks import identity, pan  # noqa: F401

"""Label Studio import: export files (JSON, JSON_MIN) and live servers (label-studio-sdk), losing nothing silently."""

from visionkit.data.labelstudio.importer import import_labelstudio  # noqa: F401

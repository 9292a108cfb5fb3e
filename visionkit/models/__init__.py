"""Networks: layers, backbones, necks, heads, and the builder that assembles them from a config."""

from visionkit.models import backbones, heads, necks, presets  # noqa: F401
from visionkit.models.build import VisionModel, build_model  # noqa: F401

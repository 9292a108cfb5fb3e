"""Built-in backbones; importing this package registers them."""

from visionkit.models.backbones import course_nets, csp_darknet, timm_nets, torchvision_nets, vit  # noqa: F401
from visionkit.models.backbones.base import Backbone, StagedBackbone  # noqa: F401

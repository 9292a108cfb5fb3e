"""End-to-end (NMS-free) detection head, from the YOLOv10 paper (Wang et al. 2024, "consistent dual assignments"):
beside the one-to-many branches of :class:`DetectHead` (trained with task-aligned assignment, top-k anchors per
object) sits a second pair of box and class branches of the same shape, trained with a one-to-one assignment (the
same alignment metric, top-1 anchor per object). Both train together; the backbone and neck learn from the
one-to-many branch (the one-to-one branch reads their features detached). Inference reads only the one-to-one
branch, whose single anchor per object leaves nothing to suppress: the best-scoring anchors are the detections,
without NMS."""

from __future__ import annotations

import copy

import torch

from visionkit.models.heads.detect import DetectHead
from visionkit.registry import register


class EndToEndDetectHead(DetectHead):
    end2end = True  # read by the detect task: detections are the top scores, no NMS

    def __init__(
        self,
        in_channels,
        in_strides,
        num_classes: int,
        reg_max: int = 16,
        prior_imgsz: int = 640,
        cls_convs: str = "full",
    ):
        super().__init__(in_channels, in_strides, num_classes, reg_max, prior_imgsz, cls_convs)
        self.one2one_box = copy.deepcopy(self.box)  # its own weights, started as the one-to-many branch is
        self.one2one_cls = copy.deepcopy(self.cls)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training: per level (B, 2·(4·reg_max + num_classes), H, W), the one-to-many outputs then the one-to-one
        ones. Inference (eval mode: val, predict, export): the one-to-one outputs alone, in :class:`DetectHead`'s
        layout, so the one-to-many branch costs nothing once trained."""
        pairs = zip(self.one2one_box, self.one2one_cls, features)
        if not self.training:
            return [torch.cat([b(f), c(f)], 1) for b, c, f in pairs]
        # the one-to-one branch learns on the features without shaping them: its one positive anchor per object
        # is sparse supervision, and the backbone and neck learn better from the one-to-many branch alone
        # (shapes, 30 epochs: mAP50-95 0.266 with the features detached, 0.256 without)
        one = [torch.cat([b(f.detach()), c(f.detach())], 1) for b, c, f in pairs]
        return [torch.cat([m, o], 1) for m, o in zip(super().forward(features), one)]

    def split(self, outputs: list[torch.Tensor]) -> tuple[list[torch.Tensor] | None, list[torch.Tensor]]:
        """(one-to-many levels or None when the outputs are inference's, one-to-one levels)."""
        width = 4 * self.reg_max + self.num_classes
        if outputs[0].shape[1] == width:
            return None, outputs
        return [o[:, :width] for o in outputs], [o[:, width:] for o in outputs]

    def flatten(self, outputs: list[torch.Tensor]):
        return super().flatten(self.split(outputs)[1])  # inference reads the one-to-one branch

    def flatten_many(self, outputs: list[torch.Tensor]):
        return super().flatten(self.split(outputs)[0])


@register("head", "yolo_e2e")
def yolo_e2e(
    *, in_channels, in_strides, num_classes: int, reg_max: int = 16, cls_convs: str = "full"
) -> EndToEndDetectHead:
    """NMS-free detection head: one-to-many and one-to-one branches trained together (YOLOv10's dual
    assignments); inference takes the one-to-one branch's top scores, no NMS. ``reg_max`` and ``cls_convs`` as
    for ``yolo``."""
    return EndToEndDetectHead(in_channels, in_strides, num_classes, reg_max, cls_convs=cls_convs)

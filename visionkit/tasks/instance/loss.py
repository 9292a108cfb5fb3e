"""Instance-segmentation loss: the detection loss (task-aligned assignment, CIoU, BCE, DFL: detect/loss.py) plus,
for every foreground anchor, the binary cross-entropy of its assembled mask (coefficients × prototypes) against
its object's mask, counted inside the object's box only and normalised by the box's area, so that small and large
objects weigh alike (YOLACT's cropped mask loss). A Dice term on the same crop is optional (``mask_dice``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visionkit.tasks.detect.loss import DetectionLoss


def box_crop(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, 4) xyxy boxes in mask pixels → (K, height, width) float, 1 inside the box (pixel centres)."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None, :, None] + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, None, :] + 0.5
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    return ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)).to(boxes.dtype)


class InstanceLoss:
    """Detection loss + ``mask`` × cropped mask BCE (+ ``mask_dice`` × Dice); returns the total scaled by the batch
    size (as the detection loss is) and the parts for logging."""

    def __init__(
        self,
        head,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        mask: float = 7.5,
        dice: float = 0.0,
        topk: int = 10,
    ):
        self.head = head
        self.detection = DetectionLoss(head, box, cls, dfl, topk)
        self.mask_gain, self.dice_gain = mask, dice

    def __call__(self, outputs, targets: torch.Tensor, masks: torch.Tensor, imgsz: tuple[int, int]):
        """targets (T, 6) rows in image order (batch index, class, cx, cy, w, h); masks (T, h, w) uint8 coverage
        of each row's object at a fraction of the input size."""
        _, coef, protos = self.head.split(outputs)
        total, parts, (t_boxes, _, fg, gt_idx) = self.detection(outputs, targets, imgsz, assignment=True)
        b, _, ph, pw = protos.shape
        loss_mask = loss_dice = protos.new_zeros((), dtype=torch.float32)
        if fg.any() and len(masks):
            counts = torch.bincount(targets[:, 0].long(), minlength=b)
            starts = torch.cumsum(counts, 0) - counts  # first row of each image (rows come in image order)
            target = masks.to(protos.device, torch.float32)[:, None] / 255
            if target.shape[-2:] != (ph, pw):
                target = F.interpolate(target, size=(ph, pw), mode="area" if target.shape[-1] > pw else "bilinear")
            target = target[:, 0]
            sx, sy = pw / imgsz[1], ph / imgsz[0]
            scale = t_boxes.new_tensor([sx, sy, sx, sy])
            bce_sum, dice_sum, n = 0.0, 0.0, 0
            for i in range(b):
                sel = fg[i]
                if not sel.any():
                    continue
                logits = (coef[i, sel].float() @ protos[i].float().flatten(1)).view(-1, ph, pw)
                gt = target[starts[i] + gt_idx[i, sel]]
                boxes = t_boxes[i, sel].float() * scale
                crop = box_crop(boxes, ph, pw)
                area = crop.sum((1, 2)).clamp(min=1.0)
                bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
                bce_sum = bce_sum + ((bce * crop).sum((1, 2)) / area).sum()
                if self.dice_gain:
                    p = logits.sigmoid() * crop
                    g = gt * crop
                    dice_sum = (
                        dice_sum + (1 - (2 * (p * g).sum((1, 2)) + 1) / (p.sum((1, 2)) + g.sum((1, 2)) + 1)).sum()
                    )
                n += int(sel.sum())
            loss_mask = bce_sum / max(n, 1)
            if self.dice_gain:
                loss_dice = dice_sum / max(n, 1)
        else:
            loss_mask = loss_mask + 0 * protos.sum() + 0 * coef.sum()  # every parameter takes part (DDP)
        total = total + (self.mask_gain * loss_mask + self.dice_gain * loss_dice) * b
        parts["mask"] = float(loss_mask.detach())
        if self.dice_gain:
            parts["dice"] = float(loss_dice.detach())
        return total, parts

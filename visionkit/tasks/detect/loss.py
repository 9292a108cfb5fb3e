"""Detection loss, written from the papers:

- Task-aligned assignment (TOOD, Feng et al. 2021): for each ground-truth box, anchors whose centre lies inside
  it are ranked by t = s^α · u^β (s: predicted score of the box's class, u: IoU of the predicted box); the top k
  become positives; an anchor claimed by several boxes goes to the one it overlaps most. Soft targets are t
  rescaled so that each box's best anchor gets that anchor's IoU.
- Classification: binary cross-entropy against those soft targets (YOLOv8 style).
- Box: CIoU (Zheng et al. 2020) weighted by the target score.
- Distribution focal loss (GFL, Li et al. 2020): cross-entropy on the two bins around the target distance.
- End-to-end heads (YOLOv10, Wang et al. 2024): the sum of the above for the one-to-many branch and, with a top-1
  assignment, for the one-to-one branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from visionkit.models.heads.detect import DetectHead, distances_to_boxes


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of matching boxes (..., 4) xyxy."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching boxes: IoU − centre distance² / enclosing diagonal² − α·v (aspect term)."""
    iou = box_iou_pairwise(a, b, eps)
    wa, ha = (a[..., 2] - a[..., 0]).clamp(min=eps), (a[..., 3] - a[..., 1]).clamp(min=eps)
    wb, hb = (b[..., 2] - b[..., 0]).clamp(min=eps), (b[..., 3] - b[..., 1]).clamp(min=eps)
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    diag = cw**2 + ch**2 + eps
    centre = (
        (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2 + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2
    ) / 4
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre / diag + v * alpha)


class TaskAlignedAssigner:
    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(
        self,
        scores: torch.Tensor,
        boxes: torch.Tensor,
        points: torch.Tensor,
        gt_cls: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_valid: torch.Tensor,
    ):
        """scores (B, N, C) sigmoid, boxes (B, N, 4) predicted xyxy, points (N, 2), gt_cls (B, M), gt_boxes
        (B, M, 4) xyxy, gt_valid (B, M) bool. Returns target boxes (B, N, 4), target scores (B, N, C),
        foreground mask (B, N), and the index of each anchor's object (B, N) (meaningful where foreground)."""
        b, n, c = scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            return (
                torch.zeros_like(boxes),
                torch.zeros_like(scores),
                torch.zeros(b, n, dtype=torch.bool, device=scores.device),
                torch.zeros(b, n, dtype=torch.long, device=scores.device),
            )
        # anchors whose centre lies inside each box: (B, M, N)
        lt = points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - points[None, None]
        inside = torch.cat([lt, rb], -1).amin(-1) > self.eps
        candidates = inside & gt_valid[..., None]
        # alignment metric
        cls_idx = gt_cls.long().clamp(min=0)
        s = scores.gather(2, cls_idx[:, None, :].expand(b, n, m)).transpose(1, 2)  # B, M, N
        overlaps = box_iou_pairwise(gt_boxes[:, :, None, :], boxes[:, None, :, :]).clamp(min=0)  # B, M, N
        align = s.pow(self.alpha) * overlaps.pow(self.beta) * candidates
        # top-k anchors per box
        k = min(self.topk, n)
        top = align.topk(k, dim=-1).indices
        chosen = torch.zeros_like(align, dtype=torch.bool).scatter_(-1, top, True) & candidates
        # an anchor claimed by several boxes goes to the one it overlaps most
        multi = chosen.sum(1, keepdim=True) > 1
        best = overlaps.argmax(1, keepdim=True)
        best_mask = torch.zeros_like(chosen).scatter_(1, best, True)
        chosen = torch.where(multi, best_mask & chosen.any(1, keepdim=True), chosen)
        fg = chosen.any(1)  # B, N
        gt_idx = chosen.float().argmax(1)  # B, N
        target_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, n, 4))
        target_cls = cls_idx.gather(1, gt_idx)
        # soft scores: alignment normalised per box so its best anchor gets its IoU
        align = align * chosen
        norm = align * (overlaps * chosen).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + self.eps)
        norm = norm.amax(1)  # B, N
        target_scores = F.one_hot(target_cls, c).to(scores.dtype) * (norm * fg)[..., None]
        return target_boxes, target_scores, fg, gt_idx


class DetectionLoss:
    """Sum of box (CIoU), classification (BCE) and DFL losses, each times its gain; returns the total scaled by
    the batch size (as gradients are averaged per image) and the parts for logging."""

    def __init__(
        self, head: DetectHead, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5, topk: int = 10, flatten=None
    ):
        self.head = head
        self.gains = (box, cls, dfl)
        self.assigner = TaskAlignedAssigner(topk=topk)
        self.flatten = flatten or head.flatten  # the branch this loss trains (an end-to-end head has two)

    def __call__(self, outputs: list[torch.Tensor], targets: torch.Tensor, imgsz: tuple[int, int], assignment=False):
        """targets (T, 6): batch index, class, cx, cy, w, h normalised to the input image. ``assignment``: also
        return (target boxes (B, N, 4), target scores (B, N, C), foreground (B, N), object index (B, N)), for a loss
        built on this one (instance masks)."""
        head = self.head
        dist, logits, points, strides = self.flatten(outputs)
        dist, logits = dist.float(), logits.float()
        b = dist.shape[0]
        ltrb = head.distances(dist)
        pred_boxes = distances_to_boxes(ltrb, points / strides) * strides  # pixels
        gt_cls, gt_boxes, gt_valid = pad_targets(targets, b, imgsz, dist.device)
        t_boxes, t_scores, fg, gt_idx = self.assigner(
            logits.detach().sigmoid(), pred_boxes.detach(), points, gt_cls, gt_boxes, gt_valid
        )
        score_sum = t_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / score_sum
        loss_box = loss_dfl = logits.new_zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg]
            loss_box = ((1 - ciou(pred_boxes[fg], t_boxes[fg])) * weight).sum() / score_sum
            if head.reg_max > 1:  # reg_max=1 regresses the distances directly: the CIoU term is the box loss
                target_ltrb = torch.cat([points[None] - t_boxes[..., :2], t_boxes[..., 2:] - points[None]], -1)
                target_ltrb = (target_ltrb / strides[None])[fg].clamp(0, head.reg_max - 1 - 0.01)
                loss_dfl = (dfl(dist[fg], target_ltrb).mean(-1) * weight).sum() / score_sum
        g_box, g_cls, g_dfl = self.gains
        total = (g_box * loss_box + g_cls * loss_cls + g_dfl * loss_dfl) * b
        parts = {"box": float(loss_box.detach()), "cls": float(loss_cls.detach()), "dfl": float(loss_dfl.detach())}
        if assignment:
            return total, parts, (t_boxes, t_scores, fg, gt_idx)
        return total, parts


class EndToEndLoss:
    """YOLOv10's consistent dual assignments: the detection loss of the one-to-many branch (top-k anchors per
    object) plus that of the one-to-one branch (the same alignment metric, top-1), so the branch inference reads
    learns one anchor per object while the other keeps the rich supervision of many."""

    def __init__(self, head, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5, topk: int = 10):
        self.head = head
        self.many = DetectionLoss(head, box, cls, dfl, topk, flatten=head.flatten_many)
        self.one = DetectionLoss(head, box, cls, dfl, topk=1, flatten=head.flatten)

    def __call__(self, outputs: list[torch.Tensor], targets: torch.Tensor, imgsz: tuple[int, int]):
        one, one_parts = self.one(outputs, targets, imgsz)
        if self.head.split(outputs)[0] is None:  # inference outputs (validation): the one-to-one branch alone
            return one, one_parts
        many, many_parts = self.many(outputs, targets, imgsz)
        return many + one, {k: many_parts[k] + one_parts[k] for k in many_parts}


def dfl(dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss: (K, 4, R) logits, (K, 4) continuous targets → (K, 4)."""
    left = target.long()
    w_right = target - left
    log_p = dist.log_softmax(-1)
    return -(
        log_p.gather(-1, left[..., None]).squeeze(-1) * (1 - w_right)
        + log_p.gather(-1, (left + 1)[..., None]).squeeze(-1) * w_right
    )


def pad_targets(targets: torch.Tensor, batch: int, imgsz: tuple[int, int], device) -> tuple:
    """(T, 6) rows → class (B, M), xyxy pixel boxes (B, M, 4), valid mask (B, M), M = most boxes in an image."""
    h, w = imgsz
    if targets.numel() == 0:
        return (
            torch.zeros(batch, 0, device=device),
            torch.zeros(batch, 0, 4, device=device),
            torch.zeros(batch, 0, dtype=torch.bool, device=device),
        )
    bi = targets[:, 0].long()
    counts = torch.bincount(bi, minlength=batch)
    m = int(counts.max())
    cls = torch.zeros(batch, m, device=device)
    boxes = torch.zeros(batch, m, 4, device=device)
    valid = torch.zeros(batch, m, dtype=torch.bool, device=device)
    order = torch.argsort(bi, stable=True)
    bi_sorted = bi[order]
    slot = torch.arange(len(bi), device=device) - torch.cumsum(counts, 0)[bi_sorted] + counts[bi_sorted]
    t = targets[order].to(device)
    xyxy = torch.stack(
        [
            (t[:, 2] - t[:, 4] / 2) * w,
            (t[:, 3] - t[:, 5] / 2) * h,
            (t[:, 2] + t[:, 4] / 2) * w,
            (t[:, 3] + t[:, 5] / 2) * h,
        ],
        1,
    )
    cls[bi_sorted, slot] = t[:, 1]
    boxes[bi_sorted, slot] = xyxy
    valid[bi_sorted, slot] = True
    return cls, boxes, valid

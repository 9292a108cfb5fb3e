"""What an exported detector outputs. Pure tensor ops, correct for every batch size and image size a dynamic
model accepts (nothing is specialised to the traced shape)."""

from __future__ import annotations

import torch
from torch import nn


class DetectExport(nn.Module):
    """Outputs ``boxes`` (B, N, 4: x1, y1, x2, y2 in input pixels) and ``scores`` (B, N, C: sigmoid class
    scores) for the N anchor points; confidence filtering and NMS are left to the caller."""

    output_names = ("boxes", "scores")
    dynamic_output_axes = {"boxes": {0: "batch", 1: "anchors"}, "scores": {0: "batch", 1: "anchors"}}
    layout = ("boxes (B, N, 4) x1 y1 x2 y2 in input pixels; scores (B, N, num_classes) sigmoid; no NMS: keep "
              "boxes with score > conf, then class-aware NMS")
    nms = False

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.head.decode(self.net(x))


class DetectExportNMS(DetectExport):
    """NMS inside the graph: ``detections`` (B, max_det, 6: x1, y1, x2, y2, score, class) sorted by score, zero
    rows after ``num_detections`` (B,).

    Suppression is Cluster-NMS (Zheng et al., 2021): with boxes sorted by score, a box is kept when no *kept*
    higher-scored box of its class overlaps it above ``iou``; iterating that rule converges to greedy NMS, here
    for ``iterations`` rounds (enough for the chains of overlaps that occur in practice).
    """

    output_names = ("detections", "num_detections")
    dynamic_output_axes = {"detections": {0: "batch"}, "num_detections": {0: "batch"}}
    layout = ("detections (B, max_det, 6) x1 y1 x2 y2 score class in input pixels, best first; num_detections (B,) "
              "valid rows")
    nms = True

    def __init__(self, net: nn.Module, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 iterations: int = 30):
        super().__init__(net)
        self.conf, self.iou, self.max_det, self.iterations = conf, iou, max_det, iterations

    def forward(self, x: torch.Tensor):
        boxes, scores = self.net.head.decode(self.net(x))
        best, cls = scores.max(-1)  # B, N
        k = self.max_det
        # pad with k zero-score anchors so top-k works whatever the image size (N may be < k)
        b = boxes.shape[0]
        boxes = torch.cat([boxes, boxes.new_zeros(b, k, 4)], 1)
        best = torch.cat([best, best.new_zeros(b, k)], 1)
        cls = torch.cat([cls, cls.new_zeros(b, k)], 1)
        best, idx = best.topk(k, dim=1)  # sorted, best first
        boxes = boxes.gather(1, idx[..., None].expand(b, k, 4))
        cls = cls.gather(1, idx)
        valid = best > self.conf
        # class-aware: boxes of different classes never overlap after this offset
        offset = cls.to(boxes.dtype)[..., None] * (boxes.amax(dim=(1, 2), keepdim=True) + 1)
        shifted = boxes + offset
        iou = _pairwise_iou(shifted)  # B, k, k
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), diagonal=1)
        iou = iou * upper
        keep = valid.to(boxes.dtype)
        for _ in range(self.iterations):
            suppressed = (iou * keep[..., None]).amax(1) > self.iou
            keep = (valid & ~suppressed).to(boxes.dtype)
        score = best * keep
        order = score.argsort(dim=1, descending=True)
        det = torch.cat([boxes, best[..., None], cls.to(boxes.dtype)[..., None]], -1) * keep[..., None]
        det = det.gather(1, order[..., None].expand(b, k, 6))
        return det, keep.sum(1).to(torch.int64)


def _pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """(B, K, 4) → (B, K, K) IoU of every pair."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area[:, :, None] + area[:, None, :] - inter + 1e-9)

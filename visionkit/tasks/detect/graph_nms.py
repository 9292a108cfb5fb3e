"""NMS that exports as ONNX ``NonMaxSuppression`` and runs the same algorithm eagerly in PyTorch, plus the
shape-agnostic tensor ops that turn its selected indices into a padded (B, max_det, 6) detection table.

Everything after the NMS op is written without Python loops over the batch or shapes read as Python ints, so the
traced graph is right for every batch size and image size of a dynamic export."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


class OnnxNMS(torch.autograd.Function):
    """ONNX NonMaxSuppression semantics: per image and per class, boxes with score > ``conf`` in descending score
    order, greedy suppression of IoU > ``iou``, at most ``max_per_class`` kept. Returns selected indices (K, 3):
    image, class, box — ordered by image, then class, then descending score, as onnxruntime orders them."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float, conf: float):
        # boxes (B, N, 4) corners; scores (B, C, N)
        picked = []
        for i in range(scores.shape[0]):
            cls, idx = torch.nonzero(scores[i] > conf, as_tuple=True)
            if not len(idx):
                continue
            s = scores[i, cls, idx]
            kept = batched_nms(boxes[i, idx].float(), s.float(), cls, iou)  # descending score
            kept = kept[torch.sort(cls[kept], stable=True).indices]  # class-major, scores still descending
            c, n = cls[kept], idx[kept]
            rank = torch.arange(len(c), device=c.device) - torch.searchsorted(c, c)  # position within its class
            c, n = c[rank < max_per_class], n[rank < max_per_class]
            picked.append(torch.stack([torch.full_like(c, i), c, n], 1))
        if not picked:
            return torch.zeros((0, 3), dtype=torch.long, device=boxes.device)
        return torch.cat(picked).long()

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float, conf: float):
        return g.op("NonMaxSuppression", boxes, scores,
                    g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.long)),
                    g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
                    g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)))


def detection_table(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, max_det: int):
    """Boxes (B, N, 4) x1 y1 x2 y2 and class scores (B, N, C) → detections (B, max_det, 6: x1, y1, x2, y2, score,
    class) best first, zero rows after the last valid one, and the number of valid rows (B,).

    Each box competes under its best class only (as visionkit's PyTorch post-processing does), NMS is per class."""
    best = scores.max(-1, keepdim=True).values
    single = scores * (scores == best).to(scores.dtype)  # other classes zeroed: one label per box
    sel = OnnxNMS.apply(boxes, single.transpose(1, 2).contiguous(), max_det, iou, conf)
    img, cls, box = sel[:, 0], sel[:, 1], sel[:, 2]
    score = single[img, box, cls]
    rows = torch.cat([boxes[img, box], score[:, None], cls[:, None].to(boxes.dtype)], 1)  # (K, 6)
    # per image, rank its K candidates by score: other images' rows get -1; max_det padding rows guarantee
    # that top-k always has max_det columns to pick even when K < max_det
    images = torch.arange(boxes.shape[0], device=boxes.device)[:, None]
    ranked = torch.where(img[None, :] == images, score[None, :], -torch.ones_like(score)[None, :])  # (B, K)
    padding = -torch.ones_like(images, dtype=scores.dtype).expand(-1, max_det)
    top, pos = torch.cat([ranked, padding], 1).topk(max_det, dim=1)
    table = torch.cat([rows, rows.new_zeros(max_det, 6)], 0)[pos]  # (B, max_det, 6)
    valid = top >= 0
    return table * valid[..., None].to(table.dtype), valid.sum(1)

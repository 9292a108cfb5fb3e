"""NMS that exports as ONNX ``NonMaxSuppression`` and runs the same algorithm eagerly in PyTorch, plus the
shape-agnostic tensor ops that turn its selected indices into a padded (B, max_det, 6) detection table.

Everything after the NMS op is written without Python loops over the batch or shapes read as Python ints, so the
traced graph is right for every batch size and image size of a dynamic export."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_iou


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
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.long)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)),
        )


def detection_table(
    boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, max_det: int, extra: torch.Tensor | None = None
):
    """Boxes (B, N, 4) x1 y1 x2 y2 and class scores (B, N, C) → detections (B, max_det, 6: x1, y1, x2, y2, score,
    class) best first, zero rows after the last valid one, and the number of valid rows (B,). ``extra`` (B, N, E):
    per-anchor values (mask coefficients) appended to each kept row, giving (B, max_det, 6 + E).

    Each box competes under its best class only (as visionkit's PyTorch post-processing does), NMS is per class."""
    best, label = scores.max(-1, keepdim=True)
    single = torch.zeros_like(scores).scatter(-1, label, best)  # other classes zeroed: one label per box, even on ties
    sel = OnnxNMS.apply(boxes, single.transpose(1, 2).contiguous(), max_det, iou, conf)
    img, cls, box = sel[:, 0], sel[:, 1], sel[:, 2]
    score = single[img, box, cls]
    rows = torch.cat([boxes[img, box], score[:, None], cls[:, None].to(boxes.dtype)], 1)  # (K, 6)
    if extra is not None:
        rows = torch.cat([rows, extra[img, box].to(rows.dtype)], 1)
    # per image, rank its K candidates by score: other images' rows get -1; max_det padding rows guarantee
    # that top-k always has max_det columns to pick even when K < max_det
    images = torch.arange(boxes.shape[0], device=boxes.device)[:, None]
    ranked = torch.where(img[None, :] == images, score[None, :], -torch.ones_like(score)[None, :])  # (B, K)
    padding = -torch.ones_like(images, dtype=scores.dtype).expand(-1, max_det)
    top, pos = torch.cat([ranked, padding], 1).topk(max_det, dim=1)
    table = torch.cat([rows, rows.new_zeros(max_det, rows.shape[1])], 0)[pos]  # (B, max_det, 6 [+ E])
    valid = top >= 0
    return table * valid[..., None].to(table.dtype), valid.sum(1)


def table_problems(
    table: torch.Tensor,
    count: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
    atol: float = 1e-3,
) -> list[str]:
    """What makes (table, count) not a greedy NMS result of the candidates (boxes, scores); empty when it is one.

    Checks the defining properties rather than equality with one implementation, so any tie-break is accepted
    (fp16 scores tie often, and two runtimes order ties differently) and values may differ by ``atol`` (scores;
    boxes relative to their magnitude): every row is a candidate with its best class, rows are best first, no two
    rows of one class overlap by IoU > iou, and every candidate left out either is covered by a row of its class
    (IoU > iou, score at least its own) or ranks below a full table. Without ties these fix the result uniquely."""
    problems = []
    for i in range(len(table)):
        problems += [
            f"image {i}: {p}"
            for p in _image_problems(
                table[i].float(), int(count[i]), boxes[i].float(), scores[i].float(), conf, iou, max_det, atol
            )
        ]
    return problems


def _image_problems(table, k, boxes, scores, conf, iou, max_det, atol) -> list[str]:
    if not 0 <= k <= max_det or table[k:].any():
        return [f"count {k} out of 0..{max_det} or non-zero rows after it"]
    best = scores.max(-1).values
    left = best > conf + atol  # candidates clearly above the threshold
    problems = []
    rows = table[:k]
    if k:
        box_tol = atol * max(1.0, float(boxes.abs().max()))
        dist = torch.cdist(rows[:, :4], boxes, p=float("inf"))
        nearest = dist.argmin(1)
        # the row's class must be the box's best, or tie with it within atol (argmax of near-equal fp16 scores)
        class_score = scores[nearest, rows[:, 5].long().clamp(0, scores.shape[1] - 1)]
        unmatched = (
            (dist.gather(1, nearest[:, None])[:, 0] > box_tol)
            | (class_score < best[nearest] - atol)
            | ((class_score - rows[:, 4]).abs() > atol)
            | (rows[:, 4] <= conf - atol)
            | (rows[:, 5] < 0)
            | (rows[:, 5] >= scores.shape[1])
        )
        if bool(unmatched.any()):
            problems.append(f"{int(unmatched.sum())} row(s) match no candidate box/class/score")
        if bool((rows[1:, 4] > rows[:-1, 4] + atol).any()):
            problems.append("rows are not ordered best first")
        same = rows[:, 5][:, None] == rows[:, 5][None, :]
        if bool(((box_iou(rows[:, :4], rows[:, :4]) > iou + atol) & same & ~torch.eye(k, dtype=torch.bool)).any()):
            problems.append(f"two rows of one class overlap by IoU > {iou:g}")
        left[nearest] = False
    if bool(left.any()):  # each candidate left out is suppressed by a kept row, or ranks below a full table
        out_scores = best[left]
        covered = torch.zeros(len(out_scores), dtype=torch.bool)
        if k:  # a row covers a candidate of its class (the candidate's best, or tied with it) that it overlaps
            same_class = scores[left][:, rows[:, 5].long().clamp(0, scores.shape[1] - 1)] >= out_scores[:, None] - atol
            covered = (
                (box_iou(boxes[left], rows[:, :4]) > iou - atol)
                & same_class
                & (rows[:, 4][None, :] >= out_scores[:, None] - atol)
            ).any(1)
            if k == max_det:
                covered |= out_scores <= rows[-1, 4] + atol
        if not bool(covered.all()):
            problems.append(
                f"{int((~covered).sum())} candidate(s) above conf neither kept nor suppressed by a kept "
                f"box (best left out: score {float(out_scores[~covered].max()):.4f})"
            )
    return problems


def topk_table(boxes: torch.Tensor, scores: torch.Tensor, conf: float, max_det: int):
    """An end-to-end detector's final detections in the graph, without NMS: each box under its best class, those
    above ``conf``, the ``max_det`` best first; the same (B, max_det, 6) table and (B,) counts as
    :func:`detection_table`, built from tensor ops alone (right for every batch size and image size)."""
    best, label = scores.max(-1)  # (B, N)
    ranked = torch.where(best > conf, best, -torch.ones_like(best))
    padding = -torch.ones_like(best[:, :1]).expand(-1, max_det)  # at least max_det columns to pick from
    top, pos = torch.cat([ranked, padding], 1).topk(max_det, dim=1)
    rows = torch.cat([boxes, best[..., None], label[..., None].to(boxes.dtype)], -1)  # (B, N, 6)
    rows = torch.cat([rows, torch.zeros_like(rows[:, :1]).expand(-1, max_det, -1)], 1)
    table = rows.gather(1, pos[..., None].expand(-1, -1, 6))
    valid = top >= 0
    return table * valid[..., None].to(table.dtype), valid.sum(1)


def topk_problems(table, count, boxes, scores, conf: float, max_det: int, atol: float = 1e-3) -> list[str]:
    """What makes (table, count) not the top-``max_det`` candidates above ``conf`` of (boxes, scores); ties within
    ``atol`` may be ordered or cut either way."""
    want, want_count = topk_table(boxes.float(), scores.float(), conf, max_det)
    problems = []
    for i in range(len(table)):
        k, w = int(count[i]), int(want_count[i])
        got_rows, want_rows = table[i, :k].float(), want[i, :w]
        edge = float(want_rows[-1, 4]) if w == max_det else conf  # scores this close to the cut may fall either way
        sure = want_rows[want_rows[:, 4] > edge + atol]
        if table[i, k:].any() or not (len(sure) <= k <= max_det):
            problems.append(f"image {i}: {k} row(s) where {w} were expected")
            continue
        if bool((got_rows[1:, 4] > got_rows[:-1, 4] + atol).any()):
            problems.append(f"image {i}: rows are not ordered best first")
        for row in sure:  # every clear winner is in the table with its box, score and class
            match = (got_rows[:, :4] - row[:4]).abs().amax(1) <= atol * max(1.0, float(row[:4].abs().max()))
            match &= ((got_rows[:, 4] - row[4]).abs() <= atol) & (got_rows[:, 5] == row[5])
            if not bool(match.any()):
                problems.append(f"image {i}: the detection {row.tolist()} is missing")
                break
    return problems

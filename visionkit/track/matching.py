"""Cost matrices and the optimal assignment used by the trackers."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) corner boxes → (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou_cost(track_boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray | None = None) -> np.ndarray:
    """1 − IoU; with ``det_scores``, 1 − IoU·score (ByteTrack's score fusion: a confident detection wins a tie)."""
    iou = box_iou(track_boxes, det_boxes)
    if det_scores is not None and iou.size:
        iou = iou * np.asarray(det_scores, np.float64)[None, :]
    return 1.0 - iou


def assign(cost: np.ndarray, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost one-to-one assignment keeping only pairs with cost ≤ ``thresh``.

    Returns (matches [(row, col)], unmatched rows, unmatched cols). Pairs above the threshold are made prohibitively
    expensive before solving, so the solver never trades a good pair for a forbidden one."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:
        from visionkit.errors import UsageError

        raise UsageError(f"tracking needs scipy ({e}): pip install 'visionkit[track]'") from e

    big = 1e6
    masked = np.where(cost <= thresh, cost, big)
    r, c = linear_sum_assignment(masked)
    matches = [(int(i), int(j)) for i, j in zip(r, c) if masked[i, j] < big]
    mr = {i for i, _ in matches}
    mc = {j for _, j in matches}
    return matches, [i for i in range(rows) if i not in mr], [j for j in range(cols) if j not in mc]

"""MOTChallenge text files and the field's tracking metrics.

A MOTChallenge row is ``frame, id, x, y, w, h, score, -1, -1, -1`` (frames from 1, boxes as top-left corner and
size in pixels). Ground truth files use the same first six columns; their 7th column flags rows to consider
(0 = ignore) and the 9th holds visibility. Metrics come from the field's own implementations, not re-written:
HOTA, DetA and AssA from TrackEval, MOTA, IDF1, ID switches and MOTP from py-motmetrics (extra ``[track]``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from visionkit.errors import DataError, UsageError


def mot_row(frame: int, track_id: int, box_xyxy, score: float) -> str:
    """One MOTChallenge row from a corner box."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return f"{frame},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.5f},-1,-1,-1"


def read_mot(path: str | Path) -> dict[int, np.ndarray]:
    """frame → (K, 6) rows of id, x, y, w, h and the 7th column (a prediction's score; in ground truth the
    "consider" flag, 0 = ignore this object), 1 when the file has no 7th column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MOT file '{path}' does not exist")
    frames: dict[int, list] = defaultdict(list)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) < 6 or values[0] < 1 or values[0] != int(values[0]) or values[4] < 0 or values[5] < 0:
            raise DataError(
                f"{path}:{n}: expected a MOTChallenge row 'frame,id,x,y,w,h,score,...' with frame >= 1 and "
                f"w, h >= 0, got {line.strip()[:80]!r}"
            )
        score = values[6] if len(values) > 6 else 1.0
        frames[int(values[0])].append([values[1], *values[2:6], score])
    return {f: np.asarray(rows, np.float64) for f, rows in sorted(frames.items())}


def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from visionkit.track.matching import box_iou

    def corners(x):
        return np.concatenate([x[:, :2], x[:, :2] + x[:, 2:4]], 1)

    return box_iou(corners(a), corners(b))


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UsageError(
            f"tracking metrics need {module} ({e}): pip install 'visionkit[track]' (TrackEval and motmetrics)"
        ) from e


def _drop_ignored(gt: dict[int, np.ndarray], pred: dict[int, np.ndarray], iou: float):
    """Ground truth flagged "ignore" (7th column 0: an object barely visible) is left out, and so is any predicted
    box matched to it (IoU ≥ ``iou``, optimal one-to-one over all of the frame's ground truth), as MOTChallenge's
    evaluation does: tracking an object the annotation chose not to score is neither a hit nor a false positive."""
    linear_sum_assignment = _need("scipy.optimize").linear_sum_assignment
    kept_gt, kept_pred = {}, {}
    for f in sorted(set(gt) | set(pred)):
        g = gt.get(f, np.zeros((0, 6)))
        p = pred.get(f, np.zeros((0, 6)))
        ignored = g[:, 5] == 0
        drop = np.zeros(len(p), bool)
        if ignored.any() and len(p):
            overlap = _xywh_iou(g[:, 1:5], p[:, 1:5])
            rows, cols = linear_sum_assignment(-np.where(overlap >= iou, overlap, 0))
            for r, c in zip(rows, cols):
                drop[c] |= bool(ignored[r] and overlap[r, c] >= iou)
        if (~ignored).any():
            kept_gt[f] = g[~ignored]
        if (~drop).any():
            kept_pred[f] = p[~drop]
    return kept_gt, kept_pred


def evaluate_mot(gt: dict[int, np.ndarray], pred: dict[int, np.ndarray], iou: float = 0.5) -> dict[str, float]:
    """HOTA/DetA/AssA (TrackEval) and MOTA/IDF1/ID switches/MOTP (py-motmetrics, matches at IoU ≥ ``iou``) of
    predicted tracks against ground truth, both as returned by :func:`read_mot`, over the frames of either."""
    mm = _need("motmetrics")
    hota_mod = _need("trackeval.metrics")
    gt, pred = _drop_ignored(gt, pred, iou)
    frames = sorted(set(gt) | set(pred))
    empty = np.zeros((0, 6))
    acc = mm.MOTAccumulator(auto_id=True)
    for f in frames:
        g, p = gt.get(f, empty), pred.get(f, empty)
        # 1 − IoU, NaN (no match possible) below the IoU gate; motmetrics' own iou_matrix calls np.asfarray, which
        # NumPy 2 removed, so the same matrix is made here
        overlap = _xywh_iou(g[:, 1:5], p[:, 1:5])
        dist = np.where(overlap >= iou, 1 - overlap, np.nan)
        acc.update(g[:, 0].astype(int).tolist(), p[:, 0].astype(int).tolist(), dist)
    names = ["mota", "idf1", "num_switches", "motp", "num_false_positives", "num_misses", "precision", "recall"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    row = {k: float(summary[k].iloc[0]) for k in names}

    # TrackEval's HOTA takes ids numbered 0..N-1 and one similarity (IoU) matrix per frame
    gt_ids = {v: i for i, v in enumerate(sorted({int(x) for f in gt for x in gt[f][:, 0]}))}
    pr_ids = {v: i for i, v in enumerate(sorted({int(x) for f in pred for x in pred[f][:, 0]}))}
    data = {
        "num_timesteps": len(frames),
        "num_gt_ids": len(gt_ids),
        "num_tracker_ids": len(pr_ids),
        "num_gt_dets": int(sum(len(v) for v in gt.values())),
        "num_tracker_dets": int(sum(len(v) for v in pred.values())),
        "gt_ids": [np.array([gt_ids[int(x)] for x in gt.get(f, empty)[:, 0]], int) for f in frames],
        "tracker_ids": [np.array([pr_ids[int(x)] for x in pred.get(f, empty)[:, 0]], int) for f in frames],
        "similarity_scores": [_xywh_iou(gt.get(f, empty)[:, 1:5], pred.get(f, empty)[:, 1:5]) for f in frames],
    }
    res = hota_mod.HOTA().eval_sequence(data)
    motp = row["motp"]
    return {
        "HOTA": float(np.mean(res["HOTA"])),
        "DetA": float(np.mean(res["DetA"])),
        "AssA": float(np.mean(res["AssA"])),
        "MOTA": row["mota"],
        "IDF1": row["idf1"],
        "IDSW": int(row["num_switches"]),
        "MOTP": float(1 - motp) if np.isfinite(motp) else float("nan"),  # motmetrics reports mean 1 − IoU
        "FP": int(row["num_false_positives"]),
        "FN": int(row["num_misses"]),
        "precision": row["precision"],
        "recall": row["recall"],
    }


def format_metrics(m: dict[str, float]) -> str:
    return (
        f"HOTA {m['HOTA']:.4f} (DetA {m['DetA']:.4f}, AssA {m['AssA']:.4f})  MOTA {m['MOTA']:.4f}  "
        f"IDF1 {m['IDF1']:.4f}  ID switches {m['IDSW']}  FP {m['FP']}  FN {m['FN']}  MOTP(IoU) {m['MOTP']:.4f}"
    )

"""Segmentation metrics on each image's original pixels (letterbox undone): a confusion matrix over the mask
classes, from which IoU, Dice and pixel accuracy follow. mIoU averages the classes present in the ground truth or
the prediction (a class absent from both has no defined IoU), as the PASCAL VOC and Cityscapes evaluations do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.data.format import IGNORE_INDEX
from visionkit.tasks.base import Metrics
from visionkit.tasks.shared import plot_confusion


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) pixel counts, rows = ground truth, columns = prediction; ignored pixels (255) left out.

    One bincount pass over gt·C + pred: an ignored pixel lands at 255·C + pred ≥ C², past the counted block
    (C ≤ 255), so no boolean indexing is needed."""
    idx = gt.astype(np.int32).ravel() * num_classes + pred.astype(np.int32).ravel()
    counts = np.bincount(idx, minlength=(IGNORE_INDEX + 1) * num_classes)
    return counts[: num_classes**2].reshape(num_classes, num_classes).astype(np.int64)


def scores(confusion: np.ndarray) -> dict[str, Any]:
    """Per-class IoU and Dice (NaN where a class is in neither ground truth nor prediction), their means over the
    classes present, and pixel accuracy."""
    tp = np.diag(confusion).astype(np.float64)
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    union = tp + fp + fn
    present = union > 0
    iou = np.divide(tp, union, out=np.full(len(tp), np.nan), where=present)
    dice = np.divide(2 * tp, 2 * tp + fp + fn, out=np.full(len(tp), np.nan), where=present)
    total = confusion.sum()
    return {
        "iou": iou,
        "dice": dice,
        "mIoU": float(np.nanmean(iou)) if present.any() else 0.0,
        "mDice": float(np.nanmean(dice)) if present.any() else 0.0,
        "pixel_acc": float(tp.sum() / total) if total else 0.0,
    }


class SegmentMetrics(Metrics):
    fitness_key = "mIoU"

    def __init__(self, names: list[str], to_original: Callable[[Any, list[dict]], list[np.ndarray]]):
        self.names = names
        self.to_original = to_original  # network outputs + metas → class maps at the original resolution
        self.confusion = np.zeros((len(names), len(names)), np.int64)
        self.images = 0

    def update(self, outputs, batch: dict[str, Any]) -> None:
        for pred, meta in zip(self.to_original(outputs, batch["meta"]), batch["meta"]):
            self.confusion += confusion_matrix(meta["gt"], pred, len(self.names))
            self.images += 1

    def compute(self) -> dict[str, float]:
        s = scores(self.confusion)
        return {"mIoU": s["mIoU"], "mDice": s["mDice"], "pixel_acc": s["pixel_acc"]}

    def table(self) -> str:
        s = scores(self.confusion)
        pixels = self.confusion.sum(1)
        width = max(10, *(len(n) for n in self.names))
        lines = [
            f"{'class':>{width}}  {'pixels':>10}  {'IoU':>7}  {'Dice':>7}",
            f"{'all':>{width}}  {int(pixels.sum()):>10}  {s['mIoU']:>7.4f}  {s['mDice']:>7.4f}   pixel accuracy "
            f"{s['pixel_acc']:.4f} ({self.images} images, original resolution; mean over classes present)",
        ]
        for name, n, iou, dice in zip(self.names, pixels, s["iou"], s["dice"]):
            shown = ("      -", "      -") if np.isnan(iou) else (f"{iou:>7.4f}", f"{dice:>7.4f}")
            lines.append(f"{name:>{width}}  {int(n):>10}  {shown[0]}  {shown[1]}")
        return "\n".join(lines)

    def plot(self, save_dir: Path) -> list[Path]:
        return [
            plot_confusion(
                self.confusion, self.names, save_dir / "confusion_matrix.png", "pixel confusion matrix (row-normalised)"
            )
        ]

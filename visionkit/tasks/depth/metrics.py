"""Depth metrics (Eigen et al. 2014, and the KITTI/NYU evaluation conventions), per image at its original resolution,
averaged over images: AbsRel, SqRel, RMSE, RMSE log, log10, SILog (× 100), and δ1/δ2/δ3 (share of valid pixels with
max(pred/gt, gt/pred) < 1.25^k; higher is better). A relative model's inverse depth is first aligned to each image's
ground-truth inverse depth by least squares (scale and shift), as MiDaS evaluates; a metric (or calibrated) model is
scored as it is. Predicted depths are clipped to [1 mm, max_depth] (default: the image's largest valid depth)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from visionkit.tasks.base import Metrics

MIN_DEPTH = 1e-3
ERROR_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
ACCURACY_KEYS = ("delta1", "delta2", "delta3")


def align_inverse(pred_inverse: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Least-squares scale and shift of ``pred_inverse`` onto the ground truth's inverse depth over valid pixels."""
    valid = gt > 0
    p, t = pred_inverse[valid].astype(np.float64), 1.0 / gt[valid].astype(np.float64)
    a = np.stack([p, np.ones_like(p)], 1)
    (scale, shift), *_ = np.linalg.lstsq(a, t, rcond=None)
    return pred_inverse * scale + shift


def inverse_to_depth(inverse: np.ndarray, max_depth: float) -> np.ndarray:
    """Depth from inverse depth, clipped to [MIN_DEPTH, max_depth] (non-positive inverse depth = max_depth)."""
    depth = np.full(inverse.shape, max_depth, np.float64)
    pos = inverse > 0
    depth[pos] = 1.0 / inverse[pos]
    return np.clip(depth, MIN_DEPTH, max_depth)


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every metric over the valid pixels (gt > 0) of one image; ``pred`` in metres, positive."""
    valid = gt > 0
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    d = np.log(p) - np.log(g)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean(d**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "silog": float(100 * np.sqrt(max(np.mean(d**2) - np.mean(d) ** 2, 0.0))),
        **{f"delta{k}": float(np.mean(ratio < 1.25**k)) for k in (1, 2, 3)},
    }


def score_image(values: np.ndarray, gt: np.ndarray, kind: str, max_depth: float | None) -> dict[str, float]:
    """Metrics of one predicted map. ``kind``: 'inverse_depth' (relative: aligned first) or 'metres'."""
    cap = float(max_depth or gt[gt > 0].max())
    if kind == "inverse_depth":
        pred = inverse_to_depth(align_inverse(values, gt), cap)
    else:
        pred = np.clip(values.astype(np.float64), MIN_DEPTH, cap)
    return depth_errors(pred, gt)


class DepthMetrics(Metrics):
    fitness_key = "delta1"

    def __init__(
        self,
        to_original: Callable[[Any, list[dict]], list[np.ndarray]],
        kind: Callable[[], str],
        max_depth: float | None = None,
    ):
        self.to_original = to_original  # network outputs + metas → predicted maps at the original resolution
        self.kind = kind  # what the maps hold: 'inverse_depth' (relative) or 'metres'
        self.max_depth = max_depth
        self.per_image: list[dict[str, float]] = []

    def update(self, outputs, batch: dict[str, Any]) -> None:
        kind = self.kind()
        for values, meta in zip(self.to_original(outputs, batch["meta"]), batch["meta"]):
            if (meta["gt"] > 0).any():
                self.per_image.append(score_image(values, meta["gt"], kind, self.max_depth))

    def compute(self) -> dict[str, float]:
        if not self.per_image:
            return {k: float("nan") for k in ERROR_KEYS + ACCURACY_KEYS}
        return {k: float(np.mean([m[k] for m in self.per_image])) for k in ACCURACY_KEYS + ERROR_KEYS}

    def table(self) -> str:
        m = self.compute()
        aligned = (
            "aligned: per-image least-squares scale and shift in inverse depth (relative model)"
            if self.kind() == "inverse_depth"
            else "not aligned (metric depth)"
        )
        head = "  ".join(f"{k:>8}" for k in ACCURACY_KEYS + ERROR_KEYS)
        values = "  ".join(f"{m[k]:>8.4f}" for k in ACCURACY_KEYS + ERROR_KEYS)
        return (
            f"depth on {len(self.per_image)} images at original resolution, {aligned}\n"
            f"{'higher is better':^28}  {'lower is better':^58}\n{head}\n{values}"
        )

"""Geometry of Label Studio regions: percent coordinates → pixels → YOLO rows and mask pixels."""

from __future__ import annotations

import math

import numpy as np


def rectangle_corners(value: dict, width: int, height: int) -> np.ndarray:
    """Corners (4, 2) in pixels. Label Studio rotates clockwise by ``rotation`` degrees about the top-left corner
    (x, y), in pixel space: convert percent → pixels first, then rotate."""
    x, y = value["x"] / 100 * width, value["y"] / 100 * height
    w, h = value["width"] / 100 * width, value["height"] / 100 * height
    a = math.radians(float(value.get("rotation") or 0.0))
    c, s = math.cos(a), math.sin(a)
    local = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    # image y points down, so this matrix turns clockwise on screen
    return np.stack([x + local[:, 0] * c - local[:, 1] * s, y + local[:, 0] * s + local[:, 1] * c], axis=1)


def box_row(corners: np.ndarray, width: int, height: int) -> list[float] | None:
    """Axis-aligned enclosing box of ``corners``, clipped to the image, as normalised (cx, cy, w, h);
    None when nothing of it is left inside the image."""
    x1, y1 = np.clip(corners.min(0), 0, [width, height])
    x2, y2 = np.clip(corners.max(0), 0, [width, height])
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]


def polygon_pixels(value: dict, width: int, height: int) -> np.ndarray:
    pts = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2)
    return pts / 100 * np.array([width, height])


def polygon_row(pixels: np.ndarray, width: int, height: int) -> list[float]:
    return list(np.clip(pixels / np.array([width, height]), 0, 1).reshape(-1))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def region_problem(region, rtype: str) -> str | None:
    """Why a region's value cannot be converted (wrong types, missing keys, non-finite or negative sizes), or
    None. Checked before any conversion, so a malformed region is skipped with this reason, never half-read."""
    value = region.get("value")
    if not isinstance(value, dict):
        return f"region value is {type(value).__name__}, not an object"
    labels = value.get(rtype)
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        return f"'{rtype}' must be a list of label names, got {str(labels)[:40]}"
    if rtype == "rectanglelabels":
        missing = [k for k in ("x", "y", "width", "height") if not _finite(value.get(k))]
        if missing:
            return f"rectangle {', '.join(missing)} missing or not a finite number"
        if value["width"] < 0 or value["height"] < 0:
            return f"rectangle has a negative size ({value['width']} × {value['height']} %)"
        if value.get("rotation") is not None and not _finite(value["rotation"]):
            return "rectangle rotation is not a finite number"
    elif rtype == "polygonlabels":
        points = value.get("points")
        if not (
            isinstance(points, list)
            and all(isinstance(p, (list, tuple)) and len(p) == 2 and _finite(p[0]) and _finite(p[1]) for p in points)
        ):
            return "polygon points must be a list of [x, y] pairs of finite numbers"
    return None

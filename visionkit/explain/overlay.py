"""Maps back to the original image, and heat-map overlays."""

from __future__ import annotations

import cv2
import numpy as np

from visionkit.data.transforms import content_box


def to_original(cam: np.ndarray, context, shape: tuple[int, int]) -> np.ndarray:
    """A map at the network input → (h0, w0) float32 in 0..1. ``context`` is the task's per-image context from
    ``load_inputs``: a letterbox (``scale`` (x, y) and ``pad`` (left, top)) whose padding is cropped first, or None
    for an input resized to a square (classify), which a plain resize undoes."""
    h0, w0 = shape
    if isinstance(context, dict) and "pad" in context:
        rows, cols = content_box(context["shape"], context["scale"], context["pad"])  # as the task crops its maps
        cam = cam[rows, cols]
    out = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (w0, h0), interpolation=cv2.INTER_LINEAR)
    return out.clip(0, 1).astype(np.float32)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Grey (H, W) or (H, W, 1) → BGR; BGR unchanged."""
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return image


def overlay(image_bgr: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map (JET: red where the evidence for the target is strongest) blended over the image."""
    image_bgr = as_bgr(image_bgr)
    if cam.shape != image_bgr.shape[:2]:
        cam = cv2.resize(cam, image_bgr.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image_bgr, 1 - alpha, heat, alpha, 0)

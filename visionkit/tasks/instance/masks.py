"""From a detection's mask coefficients to its mask at the original image size, and the mask's written forms (COCO
RLE, polygons, YOLO-seg rows)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from visionkit.data.transforms import content_box

PIXEL_BUDGET = 2**24  # masks assembled per chunk: about 64 MB of float32 at the original size


def assemble(
    coef: torch.Tensor, protos: torch.Tensor, boxes: np.ndarray, shape: tuple[int, int], scale, pad, input_hw
) -> np.ndarray:
    """Masks (K, h0, w0) bool at the original image size for K detections of one image.

    ``coef`` (K, M) and ``protos`` (M, Hp, Wp) from the network; ``boxes`` (K, 4) in original pixels; ``shape``,
    ``scale``, ``pad``: the letterbox to undo; ``input_hw``: the network input's size. The prototype map is
    resized to the input, cut to the letterbox content and resized to the original image (bilinear, on logits),
    thresholded at 0.5 and cropped to each box."""
    h0, w0 = (int(v) for v in shape)
    k = len(coef)
    if k == 0:
        return np.zeros((0, h0, w0), bool)
    rows, cols = content_box((h0, w0), scale, pad)
    ih, iw = input_hw
    ph, pw = protos.shape[-2:]
    # content box in prototype pixels (fractional: the prototypes are a fraction of the input)
    top, bottom = rows.start * ph / ih, rows.stop * ph / ih
    left, right = cols.start * pw / iw, cols.stop * pw / iw
    out = np.zeros((k, h0, w0), bool)
    chunk = max(1, PIXEL_BUDGET // max(1, h0 * w0))
    proto_flat = protos.float().flatten(1)
    for s in range(0, k, chunk):
        logits = (coef[s : s + chunk].float() @ proto_flat).view(-1, 1, ph, pw)
        # crop the content with a sampling grid, so a fractional content box stays exact
        theta = logits.new_zeros(len(logits), 2, 3)
        theta[:, 0, 0] = (right - left) / pw
        theta[:, 0, 2] = (left + right) / pw - 1
        theta[:, 1, 1] = (bottom - top) / ph
        theta[:, 1, 2] = (top + bottom) / ph - 1
        grid = F.affine_grid(theta, (len(logits), 1, h0, w0), align_corners=False)
        full = F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
        out[s : s + chunk] = (full > 0).numpy()
    for j, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        keep = np.zeros((h0, w0), bool)
        xa, ya = int(np.floor(max(x1, 0))), int(np.floor(max(y1, 0)))
        xb, yb = int(np.ceil(min(x2, w0))), int(np.ceil(min(y2, h0)))
        keep[ya:yb, xa:xb] = True
        out[j] &= keep
    return out


def to_rle(mask: np.ndarray) -> dict:
    """A bool mask → {"size": [h, w], "counts": str} (COCO compressed RLE, JSON-ready)."""
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer outlines of a mask's pieces (Label Studio's polygons: through the centres of their boundary pixels),
    largest first, as (k, 2) float pixel coordinates."""
    from visionkit.data.labelstudio.prelabel import mask_polygons

    return sorted(mask_polygons(mask), key=lambda p: -cv2.contourArea(p.astype(np.float32)))

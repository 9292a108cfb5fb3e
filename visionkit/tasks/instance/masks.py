"""From a detection's mask coefficients to its mask at the original image size, and the mask's written forms (COCO
RLE, polygons, YOLO-seg rows)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from visionkit.data.transforms import content_box

PIXEL_BUDGET = 2**24  # masks assembled per chunk: about 64 MB of float32 at the original size


def resample_matrix(n_out: int, n_in: int, start: float, length: float) -> torch.Tensor:
    """(n_out, n_in) weights of bilinear resampling: output pixel j reads the input at ``start + (j + 0.5) ·
    length / n_out - 0.5`` (pixel centres, a fractional crop), clamped at the border. Applied as matrices on both
    axes (``R_y @ mask @ R_xᵀ``), it gives exactly what ``grid_sample`` would, as fast matrix products."""
    x = start + (torch.arange(n_out, dtype=torch.float64) + 0.5) * (length / n_out) - 0.5
    x = x.clamp(0, n_in - 1)
    left = x.floor().long()
    right = (left + 1).clamp(max=n_in - 1)
    w = (x - left).float()
    m = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    m.index_put_((rows, left), 1 - w, accumulate=True)
    m.index_put_((rows, right), w, accumulate=True)
    return m


def assemble(
    coef: torch.Tensor, protos: torch.Tensor, boxes: np.ndarray, shape: tuple[int, int], scale, pad, input_hw
) -> np.ndarray:
    """Masks (K, h0, w0) bool at the original image size for K detections of one image.

    ``coef`` (K, M) and ``protos`` (M, Hp, Wp) from the network; ``boxes`` (K, 4) in original pixels; ``shape``,
    ``scale``, ``pad``: the letterbox to undo; ``input_hw``: the network input's size. Each mask's logits are cut
    to the letterbox content and resized to the original image in one bilinear step, thresholded at 0.5
    (logit 0) and cropped to its box."""
    h0, w0 = (int(v) for v in shape)
    k = len(coef)
    if k == 0:
        return np.zeros((0, h0, w0), bool)
    rows, cols = content_box((h0, w0), scale, pad)
    ih, iw = input_hw
    ph, pw = protos.shape[-2:]
    # the content box in prototype pixels (fractional: the prototypes are a fraction of the input)
    ry = resample_matrix(h0, ph, rows.start * ph / ih, (rows.stop - rows.start) * ph / ih)
    rx = resample_matrix(w0, pw, cols.start * pw / iw, (cols.stop - cols.start) * pw / iw).T.contiguous()
    out = np.zeros((k, h0, w0), bool)
    chunk = max(1, PIXEL_BUDGET // max(1, h0 * w0))
    proto_flat = protos.float().flatten(1)
    for s in range(0, k, chunk):
        logits = (coef[s : s + chunk].float() @ proto_flat).view(-1, ph, pw)
        out[s : s + chunk] = ((ry @ logits @ rx) > 0).numpy()
    # inside its box: the pixels the box touches (a pixel i spans [i, i + 1))
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    xs, ys = np.arange(w0), np.arange(h0)
    in_x = (xs[None] + 1 > b[:, :1]) & (xs[None] < b[:, 2:3])
    in_y = (ys[None] + 1 > b[:, 1:2]) & (ys[None] < b[:, 3:4])
    out &= in_y[:, :, None] & in_x[:, None, :]
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

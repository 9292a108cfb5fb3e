"""From a detection's mask coefficients to its mask at the original image size, and the mask's written forms (COCO
RLE, polygons, YOLO-seg rows)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from visionkit.data.transforms import content_box


def resample_matrix(n_out: int, n_in: int, start: float, length: float, device=None) -> torch.Tensor:
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
    return m.to(device)


def box_spans(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, 4) integer x0, y0, x1, y1: the pixels each box touches (pixel i spans [i, i + 1)), within the image."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    lo = np.floor(b[:, :2]).clip(0, [width, height])
    hi = np.ceil(b[:, 2:]).clip(0, [width, height])
    return np.concatenate([lo, np.maximum(hi, lo)], 1).astype(np.int64)


def assemble(
    coef: torch.Tensor,
    protos: torch.Tensor,
    boxes: np.ndarray,
    shape: tuple[int, int],
    scale,
    pad,
    input_hw,
    as_rle: bool = False,
) -> np.ndarray | list[dict]:
    """Masks (K, h0, w0) bool at the original image size for K detections of one image (``as_rle``: their COCO
    RLE instead, made one at a time, so a large image's K full-size masks never sit in memory together).

    ``coef`` (K, M) and ``protos`` (M, Hp, Wp) from the network (any device); ``boxes`` (K, 4) in original pixels;
    ``shape``, ``scale``, ``pad``: the letterbox to undo; ``input_hw``: the network input's size. Each mask's
    logits are cut to the letterbox content and resized to the original image in one bilinear step, only inside
    its box (the mask is zero outside it), and thresholded at 0.5 (logit 0)."""
    h0, w0 = (int(v) for v in shape)
    out = np.zeros((1 if as_rle else len(coef), h0, w0), bool)
    rles = []
    if not len(coef):
        return rles if as_rle else out
    rows, cols = content_box((h0, w0), scale, pad)
    ih, iw = input_hw
    ph, pw = protos.shape[-2:]
    device = protos.device
    # the content box in prototype pixels (fractional: the prototypes are a fraction of the input)
    ry = resample_matrix(h0, ph, rows.start * ph / ih, (rows.stop - rows.start) * ph / ih, device)
    rx = resample_matrix(w0, pw, cols.start * pw / iw, (cols.stop - cols.start) * pw / iw, device).T
    logits = (coef.float() @ protos.float().flatten(1)).view(-1, ph, pw)
    for j, (x0, y0, x1, y1) in enumerate(box_spans(boxes, h0, w0)):
        mask = out[0 if as_rle else j]
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = (ry[y0:y1] @ logits[j] @ rx[:, x0:x1] > 0).cpu().numpy()
        if as_rle:
            rles.append(to_rle(mask))
            mask[y0:y1, x0:x1] = False
    return rles if as_rle else out


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

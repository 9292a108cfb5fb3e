"""Joint geometry and augmentation: an image moves together with its boxes, polygons, semantic mask and depth map.

Every task's dataset builds a :class:`Sample` and runs it through these functions, so a mosaic or a random affine
moves a detector's boxes, a segmenter's mask and a depth map the same way. Dense maps are never interpolated:
masks and depth use nearest-neighbour (a blend of two class ids is no class, and a blend of two depths across an
object edge is a depth that does not exist). Where new pixels appear (padding, borders, mosaic gaps, cutout) the
mask is ``IGNORE_INDEX`` and the depth 0 (invalid), so a loss never learns from made-up pixels.

OpenCV does the pixel work rather than torchvision.transforms.v2 (tv_tensors): letterbox + random affine + colour
+ flip of a 320 px image with its boxes and mask takes 2.4 ms here against 26 ms through v2 on one thread, 11x
(tools/bench_transforms.py), and it is the pipeline the detection figures were measured with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from visionkit.data.format import IGNORE_INDEX

PAD_VALUE = 114  # grey for image padding (letterbox, borders, mosaic gaps)


@dataclass
class Sample:
    """One training or validation example in pixel coordinates of ``image`` (BGR uint8, H×W×3).

    ``boxes``: (n, 5) rows of class, x1, y1, x2, y2. ``polygons``: (class, (k, 2) points) pairs, not clipped to the
    image (rasterise them with the image bounds). ``mask``: H×W uint8 class ids, ``IGNORE_INDEX`` = not scored.
    ``depth``: H×W float32 metres (or inverse depth), 0 = invalid. ``instances``: H×W uint16 object ids, 0 = no
    object, id k is an object of class ``instance_classes[k - 1]`` (where objects overlap, the pixel is the one in
    front); ids are never interpolated, and an object whose pixels all leave the image is gone."""

    image: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    polygons: list[tuple[int, np.ndarray]] = field(default_factory=list)
    mask: np.ndarray | None = None
    depth: np.ndarray | None = None
    instances: np.ndarray | None = None
    instance_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[:2]


def _dense(sample: Sample, fn: Callable[[np.ndarray, int | float], np.ndarray]) -> None:
    """Apply ``fn(map, fill)`` to the mask and depth map (nearest-neighbour work; fill = their 'no data' value)."""
    if sample.mask is not None:
        sample.mask = fn(sample.mask, IGNORE_INDEX)
    if sample.depth is not None:
        sample.depth = fn(sample.depth, 0.0)
    if sample.instances is not None:
        sample.instances = fn(sample.instances, 0)


def _scale_points(sample: Sample, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> None:
    if len(sample.boxes):
        sample.boxes[:, [1, 3]] = sample.boxes[:, [1, 3]] * sx + dx
        sample.boxes[:, [2, 4]] = sample.boxes[:, [2, 4]] * sy + dy
    sample.polygons = [(c, p * [sx, sy] + [dx, dy]) for c, p in sample.polygons]


# --- resizing and letterbox ------------------------------------------------------------------------------------------
def resize_long_side(sample: Sample, imgsz: int) -> Sample:
    """Resize so the long side is ``imgsz`` (image: area or linear; mask and depth: nearest)."""
    h, w = sample.hw
    r = imgsz / max(h, w)
    if r == 1:
        return sample
    size = (max(1, round(w * r)), max(1, round(h * r)))
    sample.image = cv2.resize(sample.image, size, interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
    _dense(sample, lambda m, _: cv2.resize(m, size, interpolation=cv2.INTER_NEAREST))
    _scale_points(sample, size[0] / w, size[1] / h)
    return sample


def letterbox(
    img: np.ndarray, size: int | tuple[int, int], pad_value: int | float = PAD_VALUE, interpolation: int | None = None
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio to fit ``size`` (a side, or (height, width)), pad to it (centred).
    Returns the image, the scale and the (left, top) padding. ``interpolation`` defaults to linear when
    enlarging and area when shrinking (pass cv2.INTER_NEAREST for masks and depth)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    h, w = img.shape[:2]
    r = min(out_h / h, out_w / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    if (nh, nw) != (h, w):
        inter = interpolation if interpolation is not None else cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
        img = cv2.resize(img, (nw, nh), interpolation=inter)
    top, left = (out_h - nh) // 2, (out_w - nw) // 2
    out = np.full((out_h, out_w, *img.shape[2:]), pad_value, img.dtype)
    out[top : top + nh, left : left + nw] = img
    return out, r, (left, top)


def letterbox_sample(sample: Sample, size: int | tuple[int, int]) -> tuple[Sample, float, tuple[int, int]]:
    """:func:`letterbox` for a whole sample; boxes and polygons are scaled and shifted with the image."""
    sample.image, r, (left, top) = letterbox(sample.image, size)
    _dense(sample, lambda m, fill: letterbox(m, size, fill, cv2.INTER_NEAREST)[0])
    _scale_points(sample, r, r, left, top)
    return sample, r, (left, top)


def content_box(shape: tuple[int, int], scale: tuple[float, float], pad: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of a letterboxed input that hold the image of original ``shape`` (height, width), for
    per-axis ``scale`` (original → letterboxed pixels) and ``pad`` (left, top)."""
    (h0, w0), (sx, sy), (left, top) = shape, scale, pad
    nh, nw = max(1, round(h0 * sy)), max(1, round(w0 * sx))
    return slice(top, top + nh), slice(left, left + nw)


def rect_shapes(sizes: list[tuple[int, int]], imgsz: int, batch: int, stride: int = 32) -> list[tuple[int, int]]:
    """(height, width) per image for batches of ``batch`` consecutive images (width, height) — sorted by aspect
    ratio for best effect: the smallest stride multiple that holds each image of the batch with its long side
    resized to ``imgsz``, as ``letterbox`` resizes it."""
    shapes = []
    for start in range(0, len(sizes), batch):
        group = sizes[start : start + batch]
        fitted = [(max(1, round(h * imgsz / max(w, h))), max(1, round(w * imgsz / max(w, h)))) for w, h in group]
        shape = tuple(math.ceil(max(side) / stride) * stride for side in zip(*fitted))
        shapes += [shape] * len(group)
    return shapes


# --- mosaic and random affine ----------------------------------------------------------------------------------------
def mosaic4(load: Callable[[int], Sample], index: int, count: int, s: int, rng: np.random.Generator) -> Sample:
    """Sample ``index`` and three random others (``load(j)`` gives each with its long side at ``s``) around a
    random centre of a 2s×2s canvas. Boxes are clipped to the canvas; follow with :func:`random_affine` with
    ``border=-s // 2`` to crop back to s×s."""
    cx, cy = (int(rng.uniform(s * 0.5, s * 1.5)) for _ in range(2))
    canvas = Sample(np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8))
    boxes, polygons, classes = [], [], []
    for k, j in enumerate([index, *rng.integers(0, count, 3).tolist()]):
        part = load(j)
        h, w = part.hw
        if k == 0:
            x1a, y1a, x2a, y2a = max(cx - w, 0), max(cy - h, 0), cx, cy
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:
            x1a, y1a, x2a, y2a = cx, max(cy - h, 0), min(cx + w, 2 * s), cy
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:
            x1a, y1a, x2a, y2a = max(cx - w, 0), cy, cx, min(2 * s, cy + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:
            x1a, y1a, x2a, y2a = cx, cy, min(cx + w, 2 * s), min(2 * s, cy + h)
            x1b, y1b = 0, 0
        src = (slice(y1b, y1b + (y2a - y1a)), slice(x1b, x1b + (x2a - x1a)))
        canvas.image[y1a:y2a, x1a:x2a] = part.image[src]
        if part.instances is not None:  # ids of later parts follow the earlier ones, so each object keeps its own id
            offset = sum(len(c) for c in classes)
            part.instances = np.where(part.instances > 0, part.instances + offset, 0).astype(np.uint16)
            classes.append(part.instance_classes)
        for key, fill, dtype in (
            ("mask", IGNORE_INDEX, np.uint8),
            ("depth", 0.0, np.float32),
            ("instances", 0, np.uint16),
        ):
            dense = getattr(part, key)
            if dense is not None:
                if getattr(canvas, key) is None:
                    setattr(canvas, key, np.full((2 * s, 2 * s), fill, dtype))
                getattr(canvas, key)[y1a:y2a, x1a:x2a] = dense[src]
        _scale_points(part, 1.0, 1.0, x1a - x1b, y1a - y1b)
        boxes.append(part.boxes)
        polygons += part.polygons
    canvas.boxes = np.concatenate(boxes).astype(np.float32)
    canvas.boxes[:, 1:] = canvas.boxes[:, 1:].clip(0, 2 * s)
    canvas.polygons = polygons
    if classes:
        canvas.instance_classes = np.concatenate(classes)
    return canvas


def random_affine(
    sample: Sample,
    rng: np.random.Generator,
    s: int,
    *,
    degrees: float = 0.0,
    scale: float = 0.5,
    shear: float = 0.0,
    translate: float = 0.1,
    border: int = 0,
) -> Sample:
    """Random rotation, scale, shear and translation; the output is s×s. ``border`` < 0 crops a mosaic canvas.

    Boxes become the enclosing box of their warped corners, clipped; a box left under 2 px wide or high, or with
    under 10 % of its warped area inside, is dropped. Polygons are warped point by point."""
    h, w = sample.hw
    out_size = (h + 2 * border, w + 2 * border)
    c = np.eye(3)
    c[0, 2], c[1, 2] = -w / 2, -h / 2
    rot = np.eye(3)
    angle = rng.uniform(-1, 1) * degrees
    gain = rng.uniform(1 - scale, 1 + scale)
    rot[:2] = cv2.getRotationMatrix2D((0, 0), angle, gain)
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    sh[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    t = np.eye(3)
    t[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_size[1]
    t[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_size[0]
    m = t @ sh @ rot @ c
    dsize = (out_size[1], out_size[0])
    sample.image = cv2.warpAffine(sample.image, m[:2], dsize, borderValue=(PAD_VALUE,) * 3)
    _dense(sample, lambda d, fill: cv2.warpAffine(d, m[:2], dsize, flags=cv2.INTER_NEAREST, borderValue=fill))
    if sample.hw != (s, s):
        sample.image = cv2.resize(sample.image, (s, s))
        _dense(sample, lambda d, _: cv2.resize(d, (s, s), interpolation=cv2.INTER_NEAREST))
    sx, sy = s / out_size[1], s / out_size[0]
    sample.polygons = [(c_, _warp(p, m) * [sx, sy]) for c_, p in sample.polygons]
    boxes = sample.boxes
    if len(boxes):
        corners = _warp(boxes[:, [1, 2, 3, 2, 3, 4, 1, 4]].reshape(-1, 2), m).reshape(-1, 8)
        xs, ys = corners[:, 0::2], corners[:, 1::2]
        new = np.c_[xs.min(1), ys.min(1), xs.max(1), ys.max(1)]
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_size[1]) * sx
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_size[0]) * sy
        area0 = ((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])) * gain**2 * sx**2
        area1 = (new[:, 2] - new[:, 0]) * (new[:, 3] - new[:, 1])
        keep = ((new[:, 2] - new[:, 0]) > 2) & ((new[:, 3] - new[:, 1]) > 2) & (area1 > 0.1 * area0 + 1e-9)
        sample.boxes = np.c_[boxes[keep, :1], new[keep]].astype(np.float32)
    return sample


def _warp(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (np.c_[points, np.ones(len(points))] @ m.T)[:, :2]


# --- colour, flips, cutout -------------------------------------------------------------------------------------------
def hsv_jitter(sample: Sample, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> Sample:
    """Random hue, saturation and value gains (the image only)."""
    gains = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    if (gains != 1).any():
        hue, sat, val = cv2.split(cv2.cvtColor(sample.image, cv2.COLOR_BGR2HSV))
        x = np.arange(256, dtype=np.float32)
        lut_h = ((x * gains[0]) % 180).astype(np.uint8)
        lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
        lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
        hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        sample.image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return sample


def random_flips(sample: Sample, rng: np.random.Generator, fliplr: float, flipud: float) -> Sample:
    """Horizontal then vertical flip, each with its probability."""
    h, w = sample.hw
    if rng.random() < fliplr:
        sample.image = np.ascontiguousarray(sample.image[:, ::-1])
        _dense(sample, lambda d, _: np.ascontiguousarray(d[:, ::-1]))
        if len(sample.boxes):
            sample.boxes[:, [1, 3]] = w - sample.boxes[:, [3, 1]]
        sample.polygons = [(c, p * [-1, 1] + [w, 0]) for c, p in sample.polygons]
    if rng.random() < flipud:
        sample.image = np.ascontiguousarray(sample.image[::-1])
        _dense(sample, lambda d, _: np.ascontiguousarray(d[::-1]))
        if len(sample.boxes):
            sample.boxes[:, [2, 4]] = h - sample.boxes[:, [4, 2]]
        sample.polygons = [(c, p * [1, -1] + [0, h]) for c, p in sample.polygons]
    return sample


def cutout(sample: Sample, rng: np.random.Generator, p: float) -> Sample:
    """With probability ``p``, 1-4 rectangles (5-25 % of each side) filled with a random grey; what lies under
    them is unknown, so the mask there is ignored and the depth invalid."""
    if not rng.random() < p:
        return sample
    h, w = sample.hw
    sample.image = sample.image.copy()
    _dense(sample, lambda d, _: d.copy())  # never write into arrays a cache may still hold
    for _ in range(int(rng.integers(1, 5))):
        ch, cw = int(rng.uniform(0.05, 0.25) * h), int(rng.uniform(0.05, 0.25) * w)
        y0, x0 = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        sample.image[y0 : y0 + ch, x0 : x0 + cw] = rng.integers(64, 192, 3)
        if sample.mask is not None:
            sample.mask[y0 : y0 + ch, x0 : x0 + cw] = IGNORE_INDEX
        if sample.depth is not None:
            sample.depth[y0 : y0 + ch, x0 : x0 + cw] = 0
        if sample.instances is not None:  # hidden under the patch: that part of an object is not visible
            sample.instances[y0 : y0 + ch, x0 : x0 + cw] = 0
    return sample


def train_augment(
    index: int, load: Callable[[int], Sample], count: int, s: int, rng: np.random.Generator, a: dict, mosaic: float
) -> Sample:
    """The training chain shared by dense and box tasks for sample ``index`` of ``count`` (``load(j)`` gives a
    sample with its long side at ``s``): mosaic (probability ``mosaic``) or the letterboxed image, a random affine,
    mixup (samples without dense maps), HSV, flips, cutout. ``a`` holds the augmentation keys."""
    affine = {
        "degrees": float(a["degrees"]),
        "scale": float(a["scale"]),
        "shear": float(a["shear"]),
        "translate": float(a["translate"]),
    }
    if rng.random() < mosaic:
        sample = random_affine(mosaic4(load, index, count, s, rng), rng, s, border=-s // 2, **affine)
        if rng.random() < float(a["mixup"]):
            other = random_affine(
                mosaic4(load, int(rng.integers(count)), count, s, rng), rng, s, border=-s // 2, **affine
            )
            lam = rng.beta(32.0, 32.0)
            if sample.mask is None and sample.depth is None and sample.instances is None:  # dense: not blendable
                sample.image = (sample.image * lam + other.image * (1 - lam)).astype(np.uint8)
                sample.boxes = np.concatenate([sample.boxes, other.boxes])
                sample.polygons += other.polygons
    else:
        sample, _, _ = letterbox_sample(load(index), s)
        sample = random_affine(sample, rng, s, border=0, **affine)
    sample = hsv_jitter(sample, rng, float(a["hsv_h"]), float(a["hsv_s"]), float(a["hsv_v"]))
    sample = random_flips(sample, rng, float(a["fliplr"]), float(a["flipud"]))
    return cutout(sample, rng, float(a["cutout"]))

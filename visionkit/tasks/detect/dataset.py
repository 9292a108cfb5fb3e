"""Detection data: YOLO-layout images + labels, a label cache, letterbox, mosaic, random affine, HSV, flips,
mixup and cutout. Boxes move with the image; clipped boxes that lose most of their area are dropped."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data.format import image_size, read_label_file, row_to_box, sidecar_path
from visionkit.errors import DataError

CACHE_VERSION = 2  # 2: image sizes with the EXIF orientation applied


def load_labels(files: list[Path], num_classes: int, cache_dir: Path | None) -> dict:
    """Parse every label file once; later runs read ``labels.cache.json`` unless a file changed (size or mtime).

    Returns {'labels': [array (n, 5) cls cx cy w h], 'shapes': [(w, h)], 'files': [...], 'skipped': [...],
    'fixed': n boxes clipped, 'dropped': n boxes dropped}.
    """
    stamp = hashlib.sha1()
    for f in files:
        for p in (f, sidecar_path(f)):
            try:
                st = p.stat()
                stamp.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
            except FileNotFoundError:
                stamp.update(f"{p}:-;".encode())
    stamp.update(f"{num_classes}:{CACHE_VERSION}".encode())
    cache_file = cache_dir / "labels.cache.json" if cache_dir else None
    if cache_file and cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("hash") == stamp.hexdigest():
                cached["labels"] = [np.asarray(a, dtype=np.float32).reshape(-1, 5) for a in cached["labels"]]
                cached["files"] = [Path(f) for f in cached["files"]]
                cached["from_cache"] = True
                return cached
        except (json.JSONDecodeError, KeyError, ValueError):
            pass  # a broken cache is rebuilt
    labels, shapes, kept, skipped = [], [], [], []
    fixed = dropped = 0
    for f in files:
        try:
            size = image_size(f)  # as displayed (EXIF orientation), like cv2.imread decodes it
        except Exception as e:
            skipped.append([str(f), f"{type(e).__name__}: {e}"])
            continue
        rows = read_label_file(sidecar_path(f), num_classes)  # bad class ids raise, naming file and line
        boxes = []
        for cls, coords in rows:
            cx, cy, w, h = row_to_box(coords)
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                fixed += 1
            if (cx2 - cx1) * size[0] < 1 or (cy2 - cy1) * size[1] < 1:
                dropped += 1  # zero-sized or wholly outside the image
                continue
            boxes.append([cls, (cx1 + cx2) / 2, (cy1 + cy2) / 2, cx2 - cx1, cy2 - cy1])
        labels.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 5))
        shapes.append(size)
        kept.append(f)
    result = {"hash": stamp.hexdigest(), "labels": labels, "shapes": shapes, "files": kept, "skipped": skipped,
              "fixed": fixed, "dropped": dropped, "from_cache": False}
    if cache_file:
        try:
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({**result, "labels": [a.tolist() for a in labels],
                                       "files": [str(f) for f in kept]}))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only dataset just is not cached
    return result


def letterbox(img: np.ndarray, size: int | tuple[int, int], pad_value: int = 114
              ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio to fit ``size`` (a side, or (height, width)), pad to it (centred).
    Returns the image, the scale and the (left, top) padding."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    h, w = img.shape[:2]
    r = min(out_h / h, out_w / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
    top, left = (out_h - nh) // 2, (out_w - nw) // 2
    out = np.full((out_h, out_w, 3), pad_value, np.uint8)
    out[top:top + nh, left:left + nw] = img
    return out, r, (left, top)


def rect_shapes(sizes: list[tuple[int, int]], imgsz: int, batch: int, stride: int = 32) -> list[tuple[int, int]]:
    """(height, width) per image for batches of ``batch`` consecutive images (width, height) — sorted by aspect
    ratio for best effect: the smallest stride multiple that holds each image of the batch with its long side
    resized to ``imgsz``, as ``letterbox`` resizes it."""
    shapes = []
    for start in range(0, len(sizes), batch):
        group = sizes[start:start + batch]
        fitted = [(max(1, round(h * imgsz / max(w, h))), max(1, round(w * imgsz / max(w, h)))) for w, h in group]
        shape = tuple(math.ceil(max(side) / stride) * stride for side in zip(*fitted))
        shapes += [shape] * len(group)
    return shapes


class DetectionDataset(Dataset):
    """Items: (image uint8 (3, S, S), targets (n, 5) cls cx cy w h normalised, meta dict)."""

    def __init__(self, files: list[Path], names: list[str], imgsz: int, train: bool, args: dict[str, Any],
                 cache_dir: Path | None = None, verbose: bool = True):
        info = load_labels(files, len(names), cache_dir)
        if info["skipped"]:
            listed = "; ".join(f"{f} ({r})" for f, r in info["skipped"][:5])
            warnings.warn(f"skipped {len(info['skipped'])} image(s) that do not decode: {listed}", stacklevel=2)
        if verbose and (info["fixed"] or info["dropped"]):
            print(f"labels: {info['fixed']} box(es) clipped to the image, {info['dropped']} zero-size or outside "
                  f"box(es) dropped")
        self.files, self.labels, self.shapes = info["files"], info["labels"], info["shapes"]
        self.skipped = info["skipped"]
        self.from_cache = info["from_cache"]
        if not self.files:
            raise DataError(f"no readable images among {len(files)} file(s)")
        self.names, self.imgsz, self.train = names, imgsz, train
        self.a = args
        self.mosaic = float(args.get("mosaic", 1.0)) if train else 0.0
        self.rect = not train and bool(args.get("rect", True))
        self.batch_shapes: list[tuple[int, int]] | None = None  # per image, set by prepare_batches (rect)
        if self.rect:  # similar aspect ratios side by side, so that each batch shares one snug shape
            order = sorted(range(len(self.files)), key=lambda i: self.shapes[i][1] / self.shapes[i][0])
            self.files, self.labels, self.shapes = ([seq[i] for i in order] for seq in
                                                    (self.files, self.labels, self.shapes))
        self._cache = [self._read(i) for i in range(len(self.files))] if args.get("cache") else None

    def prepare_batches(self, batch: int) -> None:
        """Called with the loader's batch size (unshuffled): rectangular batches when ``rect``."""
        if self.rect:
            self.batch_shapes = rect_shapes(self.shapes, self.imgsz, batch)

    def __len__(self) -> int:
        return len(self.files)

    def close_mosaic(self) -> None:
        self.mosaic = 0.0

    def _read(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image '{self.files[i]}'")
        h, w = img.shape[:2]
        r = self.imgsz / max(h, w)
        if r != 1:
            img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))),
                             interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
        return img

    def _load(self, i: int) -> np.ndarray:
        return self._cache[i] if self._cache is not None else self._read(i)

    def __getitem__(self, i: int):
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())  # follows torch's seeding
        if self.train and rng.random() < self.mosaic:
            img, boxes = self._mosaic(i, rng)
            if rng.random() < float(self.a.get("mixup", 0.0)):
                img2, boxes2 = self._mosaic(int(rng.integers(len(self))), rng)
                lam = rng.beta(32.0, 32.0)
                img = (img * lam + img2 * (1 - lam)).astype(np.uint8)
                boxes = np.concatenate([boxes, boxes2])
        else:
            img, boxes, meta = self._letterboxed(i)
            if self.train:
                img, boxes = self._affine(img, boxes, rng, border=0)
        if self.train:
            img, boxes = self._colour_flip_cutout(img, boxes, rng)
        h, w = img.shape[:2]
        targets = np.zeros((len(boxes), 5), np.float32)
        if len(boxes):
            targets[:, 0] = boxes[:, 0]
            targets[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2 / w
            targets[:, 2] = (boxes[:, 2] + boxes[:, 4]) / 2 / h
            targets[:, 3] = (boxes[:, 3] - boxes[:, 1]) / w
            targets[:, 4] = (boxes[:, 4] - boxes[:, 2]) / h
        meta = {"index": i} if self.train else meta
        rgb = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(targets), meta

    # -- geometry -----------------------------------------------------------------------------------------------------
    def _pixel_boxes(self, i: int, w: int, h: int, scale_w: float, scale_h: float, dx: float, dy: float):
        lab = self.labels[i]
        out = np.zeros((len(lab), 5), np.float32)
        if len(lab):
            out[:, 0] = lab[:, 0]
            out[:, 1] = (lab[:, 1] - lab[:, 3] / 2) * w * scale_w + dx
            out[:, 2] = (lab[:, 2] - lab[:, 4] / 2) * h * scale_h + dy
            out[:, 3] = (lab[:, 1] + lab[:, 3] / 2) * w * scale_w + dx
            out[:, 4] = (lab[:, 2] + lab[:, 4] / 2) * h * scale_h + dy
        return out

    def _letterboxed(self, i: int):
        img = self._load(i)
        w0, h0 = self.shapes[i]
        size = self.batch_shapes[i] if self.batch_shapes is not None else self.imgsz
        out, r, (left, top) = letterbox(img, size)
        h1, w1 = img.shape[:2]
        scale = r * (h1 / h0 if h0 else 1)  # from original pixels to letterboxed pixels
        boxes = self._pixel_boxes(i, w0, h0, scale, scale, left, top)
        return out, boxes, {"index": i, "file": str(self.files[i]), "shape": (h0, w0), "scale": scale,
                            "pad": (left, top), "gt": self.labels[i]}

    def _mosaic(self, i: int, rng: np.random.Generator):
        """Four images around a random centre of a 2S×2S canvas, then the random affine crops it back to S×S."""
        s = self.imgsz
        cx, cy = (int(rng.uniform(s * 0.5, s * 1.5)) for _ in range(2))
        canvas = np.full((2 * s, 2 * s, 3), 114, np.uint8)
        all_boxes = []
        for k, j in enumerate([i, *rng.integers(0, len(self), 3).tolist()]):
            img = self._load(j)
            h, w = img.shape[:2]
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
            canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
            w0, h0 = self.shapes[j]
            scale = w / w0
            all_boxes.append(self._pixel_boxes(j, w0, h0, scale, h / h0, x1a - x1b, y1a - y1b))
        boxes = np.concatenate(all_boxes)
        boxes[:, 1:] = boxes[:, 1:].clip(0, 2 * s)
        return self._affine(canvas, boxes, rng, border=-s // 2)

    def _affine(self, img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, border: int):
        """Random rotation, scale, shear and translation; output S×S. ``border`` < 0 crops a mosaic canvas."""
        a = self.a
        s = self.imgsz
        h, w = img.shape[:2]
        out_size = (h + 2 * border, w + 2 * border)
        c = np.eye(3)
        c[0, 2], c[1, 2] = -w / 2, -h / 2
        rot = np.eye(3)
        angle = rng.uniform(-1, 1) * float(a.get("degrees", 0.0))
        scale = rng.uniform(1 - float(a.get("scale", 0.5)), 1 + float(a.get("scale", 0.5)))
        rot[:2] = cv2.getRotationMatrix2D((0, 0), angle, scale)
        shear = np.eye(3)
        sh = float(a.get("shear", 0.0))
        shear[0, 1] = math.tan(math.radians(rng.uniform(-sh, sh)))
        shear[1, 0] = math.tan(math.radians(rng.uniform(-sh, sh)))
        t = np.eye(3)
        tr = float(a.get("translate", 0.1))
        t[0, 2] = rng.uniform(0.5 - tr, 0.5 + tr) * out_size[1]
        t[1, 2] = rng.uniform(0.5 - tr, 0.5 + tr) * out_size[0]
        m = t @ shear @ rot @ c
        img = cv2.warpAffine(img, m[:2], (out_size[1], out_size[0]), borderValue=(114, 114, 114))
        if img.shape[:2] != (s, s):
            img = cv2.resize(img, (s, s))
        if len(boxes):
            corners = boxes[:, [1, 2, 3, 2, 3, 4, 1, 4]].reshape(-1, 2)
            corners = np.c_[corners, np.ones(len(corners))] @ m.T
            corners = corners[:, :2].reshape(-1, 8)
            xs, ys = corners[:, 0::2], corners[:, 1::2]
            new = np.c_[xs.min(1), ys.min(1), xs.max(1), ys.max(1)]
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_size[1]) * s / out_size[1]
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_size[0]) * s / out_size[0]
            area0 = ((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])) * scale**2 * (s / out_size[1]) ** 2
            area1 = (new[:, 2] - new[:, 0]) * (new[:, 3] - new[:, 1])
            keep = ((new[:, 2] - new[:, 0]) > 2) & ((new[:, 3] - new[:, 1]) > 2) & (area1 > 0.1 * area0 + 1e-9)
            boxes = np.c_[boxes[keep, :1], new[keep]].astype(np.float32)
        return img, boxes

    def _colour_flip_cutout(self, img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator):
        a = self.a
        gains = rng.uniform(-1, 1, 3) * [float(a.get("hsv_h", 0.015)), float(a.get("hsv_s", 0.7)),
                                         float(a.get("hsv_v", 0.4))] + 1
        if (gains != 1).any():
            hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
            x = np.arange(256, dtype=np.float32)
            lut_h = ((x * gains[0]) % 180).astype(np.uint8)
            lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
            lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
            hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        s = self.imgsz
        if rng.random() < float(a.get("fliplr", 0.5)):
            img = np.ascontiguousarray(img[:, ::-1])
            if len(boxes):
                boxes[:, [1, 3]] = s - boxes[:, [3, 1]]
        if rng.random() < float(a.get("flipud", 0.0)):
            img = np.ascontiguousarray(img[::-1])
            if len(boxes):
                boxes[:, [2, 4]] = s - boxes[:, [4, 2]]
        if rng.random() < float(a.get("cutout", 0.0)):
            img = img.copy()
            for _ in range(int(rng.integers(1, 5))):
                ch, cw = int(rng.uniform(0.05, 0.25) * s), int(rng.uniform(0.05, 0.25) * s)
                y0, x0 = int(rng.integers(0, s - ch)), int(rng.integers(0, s - cw))
                img[y0:y0 + ch, x0:x0 + cw] = rng.integers(64, 192, 3)
        return img, boxes


def collate(batch):
    """Stack images; targets become (T, 6) rows of batch index, class, cx, cy, w, h."""
    images, targets, metas = zip(*batch)
    rows = [torch.cat([torch.full((len(t), 1), float(i)), t], 1) for i, t in enumerate(targets)]
    return torch.stack(images), torch.cat(rows) if rows else torch.zeros(0, 6), list(metas)

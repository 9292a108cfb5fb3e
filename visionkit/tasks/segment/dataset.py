"""Semantic segmentation data: an image and its mask (masks/ PNG, or polygon rows rasterised), moved together by the
joint transforms. What an image's mask comes from is decided once, when the dataset is built:

- a ``masks/`` PNG (its size must be the image's; grey or palette, 8-bit);
- else polygon rows in ``labels/`` rasterised at the image's size (value 1 + class id; ``mask_names`` rule);
- else an empty label file: a background image (all class 0);
- else (no mask, no label file, or box rows only) the image is skipped and counted: a missing label is not
  evidence that the image is all background.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data.format import (
    IGNORE_INDEX,
    fill_polygon,
    image_size,
    mask_header,
    read_label_file,
    read_mask,
    sidecar_path,
)
from visionkit.data.transforms import Sample, letterbox_sample, rect_shapes, resize_long_side, train_augment
from visionkit.errors import DataError


def index_masks(files: list[Path], num_classes: int) -> tuple[list[tuple[Path, tuple[int, int], Any]], Counter]:
    """(image, (width, height), mask source) for every usable image, and the skipped ones counted by reason.

    The source is a mask path, a list of (class, normalised polygon) rows, or None for a background image."""
    kept, skipped = [], Counter()
    for f in files:
        try:
            size = image_size(f)
        except Exception:
            skipped["image does not decode"] += 1
            continue
        mask = sidecar_path(f, "masks")
        if mask.is_file():
            msize = mask_header(mask)  # RGB, 16-bit, undecodable: an error naming the file
            if tuple(msize) != tuple(size):
                raise DataError(f"mask '{mask}' is {msize[0]}×{msize[1]} but its image '{f}' is {size[0]}×{size[1]}; "
                                f"a mask must have its image's size")
            kept.append((f, size, mask))
            continue
        label = sidecar_path(f)
        if not label.is_file():
            skipped["no mask and no label file"] += 1
            continue
        rows = read_label_file(label, num_classes - 1)
        polygons = [(cls, coords) for cls, coords in rows if len(coords) > 4]
        if rows and not polygons:
            skipped["box rows only (a box is not a mask)"] += 1
            continue
        kept.append((f, size, polygons or None))
    return kept, skipped


def orphan_masks(files: list[Path]) -> list[Path]:
    """Masks in the split's masks/ folders that belong to no image of the split."""
    used = {sidecar_path(f, "masks") for f in files}
    folders = {m.parent for m in used}
    return sorted(p for d in folders if d.is_dir() for p in d.glob("*.png") if p not in used)


class SegmentationDataset(Dataset):
    """Items: (image uint8 (3, H, W), mask uint8 (H, W) class ids with 255 = ignore, meta dict). Validation metas
    carry the mask at the original resolution (``gt``), so scores are computed on the original pixels."""

    def __init__(self, files: list[Path], num_classes: int, imgsz: int, train: bool, args: dict[str, Any],
                 verbose: bool = True):
        items, skipped = index_masks(files, num_classes)
        orphans = orphan_masks(files)
        if skipped:
            listed = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
            warnings.warn(f"segmentation: skipped {sum(skipped.values())} of {len(files)} image(s): {listed}",
                          stacklevel=2)
        if orphans:
            warnings.warn(f"segmentation: {len(orphans)} mask(s) have no image and are not used (e.g. "
                          f"{orphans[0]})", stacklevel=2)
        if not items:
            raise DataError(f"none of {len(files)} image(s) has a mask or polygon labels to train on "
                            f"({', '.join(f'{n} {r}' for r, n in skipped.items()) or 'no images'})")
        self.skipped, self.orphans = skipped, orphans
        self.files = [f for f, _, _ in items]
        self.shapes = [s for _, s, _ in items]  # (width, height) as displayed
        self.sources = [src for _, _, src in items]
        self.num_classes, self.imgsz, self.train, self.a = num_classes, imgsz, train, args
        self.mosaic = float(args.get("mosaic", 1.0)) if train else 0.0
        self.rect = not train and bool(args.get("rect", True))
        self.batch_shapes: list[tuple[int, int]] | None = None
        if self.rect:  # similar aspect ratios side by side, so that each batch shares one snug shape
            order = sorted(range(len(self.files)), key=lambda i: self.shapes[i][1] / self.shapes[i][0])
            self.files, self.shapes, self.sources = ([seq[i] for i in order] for seq in
                                                     (self.files, self.shapes, self.sources))
        self._cache = [self._read(i) for i in range(len(self.files))] if args.get("cache") else None

    def __len__(self) -> int:
        return len(self.files)

    def prepare_batches(self, batch: int) -> None:
        if self.rect:
            self.batch_shapes = rect_shapes(self.shapes, self.imgsz, batch)

    def close_mosaic(self) -> None:
        self.mosaic = 0.0

    def original_mask(self, i: int) -> np.ndarray:
        """The mask of image ``i`` at its original size, values checked against the classes."""
        w, h = self.shapes[i]
        src = self.sources[i]
        if isinstance(src, Path):
            mask = read_mask(src)
            invalid = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
            if invalid.any():
                bad = int(mask[invalid].max())
                raise DataError(f"mask '{src}' holds value {bad}, but there are only {self.num_classes} mask classes "
                                f"(0..{self.num_classes - 1}, 255 = ignore); fix the mask or mask_names in data.yaml")
            return mask
        mask = np.zeros((h, w), np.uint8)
        for cls, coords in src or []:
            fill_polygon(mask, np.asarray(coords, np.float64).reshape(-1, 2) * [w, h], cls + 1)
        return mask

    def _read(self, i: int) -> Sample:
        img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image '{self.files[i]}'")
        return resize_long_side(Sample(img, mask=self.original_mask(i)), self.imgsz)

    def sample(self, i: int) -> Sample:
        """Image ``i`` and its mask with the long side at imgsz (a fresh Sample: transforms may change it)."""
        if self._cache is None:
            return self._read(i)
        cached = self._cache[i]
        return Sample(cached.image, mask=cached.mask)

    def __getitem__(self, i: int):
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())  # follows torch's seeding
        if self.train:
            s = train_augment(i, self.sample, len(self), self.imgsz, rng, self.a, self.mosaic)
            meta = {"index": i}
        else:
            w0, h0 = self.shapes[i]
            size = self.batch_shapes[i] if self.batch_shapes is not None else self.imgsz
            s = self.sample(i)
            h1, w1 = s.hw
            s, r, pad = letterbox_sample(s, size)
            meta = {"index": i, "file": str(self.files[i]), "shape": (h0, w0), "scale": (r * w1 / w0, r * h1 / h0),
                    "pad": pad, "gt": self.original_mask(i)}
        rgb = np.ascontiguousarray(s.image[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(np.ascontiguousarray(s.mask)), meta


def collate(batch):
    images, masks, metas = zip(*batch)
    return torch.stack(images), torch.stack(masks), list(metas)

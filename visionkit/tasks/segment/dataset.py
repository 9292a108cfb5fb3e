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

import numpy as np

from visionkit.cfg import Settings
from visionkit.data.dense import DenseDataset
from visionkit.data.format import (
    IGNORE_INDEX,
    fill_polygon,
    image_size,
    mask_header,
    read_label_file,
    read_mask,
    sidecar_path,
)
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
                raise DataError(
                    f"mask '{mask}' is {msize[0]}×{msize[1]} but its image '{f}' is {size[0]}×{size[1]}; "
                    f"a mask must have its image's size"
                )
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


class SegmentationDataset(DenseDataset):
    """Items: (image uint8 (3, H, W), mask uint8 (H, W) class ids with 255 = ignore, meta dict); validation metas
    carry the mask at the original resolution (``gt``)."""

    dense = "mask"

    def __init__(
        self, files: list[Path], num_classes: int, imgsz: int, train: bool, args: Settings, verbose: bool = True
    ):
        items, skipped = index_masks(files, num_classes)
        orphans = orphan_masks(files)
        if skipped:
            listed = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
            warnings.warn(
                f"segmentation: skipped {sum(skipped.values())} of {len(files)} image(s): {listed}", stacklevel=2
            )
        if orphans:
            warnings.warn(
                f"segmentation: {len(orphans)} mask(s) have no image and are not used (e.g. {orphans[0]})", stacklevel=2
            )
        if not items:
            raise DataError(
                f"none of {len(files)} image(s) has a mask or polygon labels to train on "
                f"({', '.join(f'{n} {r}' for r, n in skipped.items()) or 'no images'})"
            )
        self.skipped, self.orphans, self.num_classes = skipped, orphans, num_classes
        super().__init__(items, imgsz, train, args)

    def original(self, i: int) -> np.ndarray:
        """The mask of image ``i`` at its original size, values checked against the classes."""
        w, h = self.shapes[i]
        src = self.sources[i]
        if isinstance(src, Path):
            mask = read_mask(src)
            invalid = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
            if invalid.any():
                bad = int(mask[invalid].max())
                raise DataError(
                    f"mask '{src}' holds value {bad}, but there are only {self.num_classes} mask classes "
                    f"(0..{self.num_classes - 1}, 255 = ignore); fix the mask or mask_names in data.yaml"
                )
            return mask
        mask = np.zeros((h, w), np.uint8)
        for cls, coords in src or []:
            fill_polygon(mask, np.asarray(coords, np.float64).reshape(-1, 2) * [w, h], cls + 1)
        return mask

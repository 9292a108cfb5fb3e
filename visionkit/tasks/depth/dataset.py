"""Monocular depth data: an image and its depth map (depth/ uint16 PNG / depth_scale, or float32 .npy metres; 0,
negative or non-finite = invalid), moved together by the joint transforms with nearest-neighbour resampling, so no
depth is ever interpolated across an object edge or into an invalid hole.

Every depth map is read once when the dataset is built: a map whose size differs from its image, or a PNG that is
not 16-bit, is an error naming the file; an image without a depth map, or whose map has no valid pixel, is skipped
and counted; negative or non-finite values are counted and read as invalid.
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

from visionkit.data.format import depth_path, image_size, read_depth
from visionkit.data.transforms import Sample, letterbox_sample, rect_shapes, resize_long_side, train_augment
from visionkit.errors import DataError


def index_depth(files: list[Path], depth_scale: float | None) -> tuple[list[tuple[Path, tuple[int, int], Path]],
                                                                     Counter]:
    """(image, (width, height), depth file) for every usable image, and what was skipped or found, counted."""
    kept, counts = [], Counter()
    for f in files:
        try:
            size = image_size(f)
        except Exception:
            counts["images skipped: do not decode"] += 1
            continue
        path = depth_path(f)
        if path is None:
            counts["images skipped: no depth map"] += 1
            continue
        invalid: dict = {}
        depth = read_depth(path, depth_scale, invalid)
        if depth.shape[::-1] != tuple(size):
            raise DataError(f"depth '{path}' is {depth.shape[1]}×{depth.shape[0]} but its image '{f}' is "
                            f"{size[0]}×{size[1]}; a depth map must have its image's size")
        if invalid.get("invalid values"):
            counts["negative or non-finite depth values (read as invalid)"] += invalid["invalid values"]
        if not (depth > 0).any():
            counts["images skipped: no valid depth pixel"] += 1
            continue
        kept.append((f, size, path))
    return kept, counts


class DepthDataset(Dataset):
    """Items: (image uint8 (3, H, W), depth float32 (H, W) metres with 0 = invalid, meta dict). Validation metas
    carry the depth at the original resolution (``gt``), so errors are computed on the original pixels."""

    def __init__(self, files: list[Path], imgsz: int, train: bool, args: dict[str, Any],
                 depth_scale: float | None, verbose: bool = True):
        items, counts = index_depth(files, depth_scale)
        if counts:
            warnings.warn(f"depth: {', '.join(f'{n} {what}' for what, n in counts.items())} (of {len(files)} "
                          f"image(s))", stacklevel=2)
        if not items:
            raise DataError(f"none of {len(files)} image(s) has a usable depth map (depth/<split>/NAME.png with "
                            f"depth_scale, or NAME.npy in metres)")
        self.counts = counts
        self.files = [f for f, _, _ in items]
        self.shapes = [s for _, s, _ in items]
        self.sources = [p for _, _, p in items]
        self.depth_scale, self.imgsz, self.train, self.a = depth_scale, imgsz, train, args
        self.mosaic = float(args.get("mosaic", 0.0)) if train else 0.0
        self.rect = not train and bool(args.get("rect", True))
        self.batch_shapes: list[tuple[int, int]] | None = None
        if self.rect:
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

    def original_depth(self, i: int) -> np.ndarray:
        return read_depth(self.sources[i], self.depth_scale)

    def _read(self, i: int) -> Sample:
        img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image '{self.files[i]}'")
        return resize_long_side(Sample(img, depth=self.original_depth(i)), self.imgsz)

    def sample(self, i: int) -> Sample:
        if self._cache is None:
            return self._read(i)
        cached = self._cache[i]
        return Sample(cached.image, depth=cached.depth)

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
                    "pad": pad, "gt": self.original_depth(i)}
        rgb = np.ascontiguousarray(s.image[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(np.ascontiguousarray(s.depth, np.float32)), meta


def collate(batch):
    images, depths, metas = zip(*batch)
    return torch.stack(images), torch.stack(depths), list(metas)

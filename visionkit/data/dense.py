"""A dataset of images with one dense map each (a segmentation mask, a depth map), moved together by the joint
transforms. Subclasses say which map (``dense``) and how to read it at the original size (``original``); this class
does the rest: rect validation batches, the RAM cache, mosaic, the letterboxed validation item and its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.cfg import Settings
from visionkit.data.decode import read_scaled
from visionkit.data.ram_cache import check_ram_cache, resized_bytes
from visionkit.data.transforms import Sample, letterbox_sample, rect_shapes, resize_long_side, train_augment
from visionkit.errors import DataError


class DenseDataset(Dataset):
    """Items: (image uint8 (3, H, W), map (H, W) of ``dense``'s dtype, meta dict). Validation metas carry the map at
    the original resolution (``gt``) so that scores are computed on the original pixels."""

    dense = "mask"  # the Sample field this dataset fills: "mask" or "depth"

    def __init__(self, items: list[tuple[Path, tuple[int, int], Any]], imgsz: int, train: bool, args: Settings):
        """``items``: (image, (width, height) as displayed, where its map comes from) per usable image."""
        self.files = [f for f, _, _ in items]
        self.shapes = [s for _, s, _ in items]
        self.sources = [src for _, _, src in items]
        self.imgsz, self.train, self.a = imgsz, train, args
        self.mosaic = float(args.mosaic) if train else 0.0
        self.rect = not train and bool(args.rect)
        self.batch_shapes: list[tuple[int, int]] | None = None
        if self.rect:  # similar aspect ratios side by side, so that each batch shares one snug shape
            order = sorted(range(len(self.files)), key=lambda i: self.shapes[i][1] / self.shapes[i][0])
            self.files, self.shapes, self.sources = (
                [seq[i] for i in order] for seq in (self.files, self.shapes, self.sources)
            )
        if args.cache:  # 3 bytes of image and up to 4 of map (float32 depth) per pixel
            check_ram_cache(
                len(self.files), resized_bytes(self.shapes, imgsz, 7), "train" if train else "val", bool(args.verbose)
            )
        self._cache = [self._read(i) for i in range(len(self.files))] if args.cache else None

    def original(self, i: int) -> np.ndarray:
        """The map of image ``i`` at the image's original size."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def prepare_batches(self, batch: int) -> None:
        if self.rect:
            self.batch_shapes = rect_shapes(self.shapes, self.imgsz, batch)

    def close_mosaic(self) -> None:
        self.mosaic = 0.0

    def _read(self, i: int) -> Sample:
        img = read_scaled(self.files[i], self.shapes[i], self.imgsz)  # a large JPEG decoded at 1/2-1/8 of its size
        if img is None:
            raise DataError(f"cannot decode image '{self.files[i]}'")
        # the map stays at the original size: resize_long_side resizes it to the (resized) image's size
        return resize_long_side(Sample(img, **{self.dense: self.original(i)}), self.imgsz)

    def sample(self, i: int) -> Sample:
        """Image ``i`` and its map with the long side at imgsz (a fresh Sample: transforms may change it)."""
        if self._cache is None:
            return self._read(i)
        cached = self._cache[i]
        return Sample(cached.image, **{self.dense: getattr(cached, self.dense)})

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
            meta = {
                "index": i,
                "file": str(self.files[i]),
                "shape": (h0, w0),
                "scale": (r * w1 / w0, r * h1 / h0),
                "pad": pad,
                "gt": self.original(i),
            }
        rgb = np.ascontiguousarray(s.image[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(np.ascontiguousarray(getattr(s, self.dense))), meta


def collate(batch):
    """Stack images and maps; metas stay a list."""
    images, maps, metas = zip(*batch)
    return torch.stack(images), torch.stack(maps), list(metas)

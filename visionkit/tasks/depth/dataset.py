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

import numpy as np

from visionkit.cfg import Settings
from visionkit.data.dense import DenseDataset
from visionkit.data.format import depth_path, image_size, read_depth
from visionkit.errors import DataError


def index_depth(
    files: list[Path], depth_scale: float | None
) -> tuple[list[tuple[Path, tuple[int, int], Path]], Counter]:
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
            raise DataError(
                f"depth '{path}' is {depth.shape[1]}×{depth.shape[0]} but its image '{f}' is "
                f"{size[0]}×{size[1]}; a depth map must have its image's size"
            )
        if invalid.get("invalid values"):
            counts["negative or non-finite depth values (read as invalid)"] += invalid["invalid values"]
        if not (depth > 0).any():
            counts["images skipped: no valid depth pixel"] += 1
            continue
        kept.append((f, size, path))
    return kept, counts


class DepthDataset(DenseDataset):
    """Items: (image uint8 (3, H, W), depth float32 (H, W) metres with 0 = invalid, meta dict); validation metas
    carry the depth at the original resolution (``gt``)."""

    dense = "depth"

    def __init__(
        self,
        files: list[Path],
        imgsz: int,
        train: bool,
        args: Settings,
        depth_scale: float | None,
        verbose: bool = True,
    ):
        items, counts = index_depth(files, depth_scale)
        if counts:
            warnings.warn(
                f"depth: {', '.join(f'{n} {what}' for what, n in counts.items())} (of {len(files)} image(s))",
                stacklevel=2,
            )
        if not items:
            raise DataError(
                f"none of {len(files)} image(s) has a usable depth map (depth/<split>/NAME.png with "
                f"depth_scale, or NAME.npy in metres)"
            )
        self.counts, self.depth_scale = counts, depth_scale
        super().__init__(items, imgsz, train, args)

    def original(self, i: int) -> np.ndarray:
        return read_depth(self.sources[i], self.depth_scale)

"""Decoding a training image no larger than it will be used.

Datasets resize every image so that its long side is ``imgsz`` (640 or less) before augmenting it, and a phone photo
is 4000 px wide: most of a full decode is thrown away by that resize. libjpeg can decode at 1/2, 1/4 or 1/8 of the
size by scaling in its DCT (OpenCV's ``IMREAD_REDUCED_COLOR_*``), which averages each block like an area resize
does. A JPEG whose long side stays above ``imgsz`` at such a factor is decoded that way, then resized as before:
a 12 MP photo to 640 px took 48 ms instead of 122 (tools/bench_decode.py), with a mean difference of half a
grey level from the full decode. Other formats, and JPEGs near ``imgsz``, are decoded in full. A classifier's
random crops keep a fraction of the picture, so its images keep enough pixels for the smallest crop.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

JPEG_START = b"\xff\xd8"  # a JPEG by its bytes, not its name: a PNG called .jpg is decoded in full
REDUCED_FLAGS = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}
REDUCED_GREY_FLAGS = {
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
}


def reduction(size: tuple[int, int], long_side: int) -> int:
    """The largest factor of 8, 4 and 2 that keeps an image of ``size`` (w, h) longer than ``long_side`` pixels
    on its long side; 1 when none does. Strictly longer: the resize that follows always runs, so a dense map read
    at full size is resized with the image."""
    longest = max(size)
    return next((k for k in REDUCED_FLAGS if longest // k > long_side), 1)


def is_jpeg(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == JPEG_START
    except OSError:
        return False


def read_scaled(path: str | Path, size: tuple[int, int], long_side: int, grey: bool = False) -> np.ndarray | None:
    """The image as BGR (``grey``: single-channel) uint8 with its EXIF orientation applied (as ``cv2.imread``),
    decoded at a reduced size when it is a JPEG whose long side stays above ``long_side`` (``size``: its (w, h) as
    displayed); None when it does not decode."""
    factor = reduction(size, long_side)
    if factor > 1 and is_jpeg(path):
        img = cv2.imread(str(path), (REDUCED_GREY_FLAGS if grey else REDUCED_FLAGS)[factor])
        if img is not None:
            return img
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)

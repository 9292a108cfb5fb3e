"""Joint transforms: masks, depth maps, boxes and polygons move exactly with the image (mosaic, affine, flips,
letterbox), and new pixels are marked ignore (mask) or invalid (depth)."""

import cv2
import numpy as np
import pytest

from visionkit.cfg import resolve
from visionkit.data.format import IGNORE_INDEX
from visionkit.data.transforms import PAD_VALUE, Sample, letterbox_sample, random_flips, train_augment

GREYS = {1: 60, 2: 160}  # a class's pixels have this grey; background is 0


def scene(k: int) -> Sample:
    """A 64×48 image whose grey level encodes the mask class, and a depth equal to the class (background 10)."""
    mask = np.zeros((48, 64), np.uint8)
    mask[8 + k : 24 + k, 6:30] = 1
    mask[28:44, 36 + k : 58] = 2
    image = np.zeros((48, 64, 3), np.uint8)
    for cls, grey in GREYS.items():
        image[mask == cls] = grey
    depth = np.where(mask > 0, mask, 10).astype(np.float32)
    return Sample(image, mask=mask, depth=depth)


def interior(region: np.ndarray) -> np.ndarray:
    """The region less its 1-pixel border, where a bilinearly warped image blends with its neighbours."""
    return cv2.erode(
        region.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
    ).astype(bool)


def check_aligned(s: Sample) -> None:
    """Image, mask and depth agree pixel for pixel inside every region (a shift of 2 px or more fails)."""
    grey = s.image[..., 0].astype(int)
    for cls, level in GREYS.items():
        on = s.mask == cls
        assert on.any() and (s.depth[on] == cls).all()  # mask and depth: both nearest, always equal
        inside = interior(on)
        assert inside.sum() > 20 and np.mean(np.abs(grey[inside] - level) <= 2) > 0.99
    pad = interior(s.mask == IGNORE_INDEX)
    assert (s.depth[s.mask == IGNORE_INDEX] == 0).all()
    assert not pad.any() or np.mean(np.abs(grey[pad] - PAD_VALUE) <= 2) > 0.99


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_affine_and_flips_move_dense_maps_with_the_image(seed):
    args = {
        **resolve({}),
        "degrees": 15.0,
        "shear": 3.0,
        "fliplr": 0.5,
        "flipud": 0.5,
        "hsv_h": 0.0,
        "hsv_s": 0.0,
        "hsv_v": 0.0,
        "cutout": 0.0,
    }
    rng = np.random.default_rng(seed)
    s = train_augment(0, scene, 4, 64, rng, args, mosaic=1.0 if seed % 2 else 0.0)
    assert s.image.shape == (64, 64, 3) and s.mask.shape == s.depth.shape == (64, 64)
    check_aligned(s)


def test_letterbox_and_flips_move_boxes_and_polygons():
    s = scene(0)
    s.boxes = np.array([[1, 6, 8, 30, 24]], np.float32)
    s.polygons = [(1, np.array([[6.0, 8.0], [30.0, 8.0], [30.0, 24.0]]))]
    s, r, (left, top) = letterbox_sample(s, 128)
    assert r == 2.0 and (left, top) == (0, 16)
    assert np.allclose(s.boxes[0, 1:], [12, 32, 60, 64]) and np.allclose(s.polygons[0][1][1], [60, 32])
    check_aligned(s)
    flipped = random_flips(s, np.random.default_rng(0), fliplr=1.0, flipud=0.0)
    assert np.allclose(flipped.boxes[0, 1:], [128 - 60, 32, 128 - 12, 64])
    assert np.allclose(flipped.polygons[0][1][1], [128 - 60, 32])
    assert flipped.mask[40, 128 - 20] == 1  # the region moved with the box

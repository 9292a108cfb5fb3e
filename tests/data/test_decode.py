"""Large JPEGs are decoded at 1/2-1/8 of their size when the dataset resizes them below that anyway: the same
picture (orientation included) as a full decode, and boxes and masks stay on their objects."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.cfg import resolve
from visionkit.data import decode
from visionkit.data.augment import classify_decode_side
from visionkit.data.datasets import ImageFolderDataset
from visionkit.data.decode import read_scaled, reduction
from visionkit.data.format import write_data_yaml
from visionkit.data.transforms import Sample, content_box, resize_long_side
from visionkit.tasks.detect.dataset import DetectionDataset
from visionkit.tasks.detect.task import DetectTask
from visionkit.tasks.segment.dataset import SegmentationDataset
from visionkit.tasks.shared import letterbox_batch


def photo(h, w, seed=0):
    """Smooth gradients, noise and a bright rectangle at (w/5..w/2, h/4..h/2): JPEG-like content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 200, y / h * 200, (x + y) / (w + h) * 200], -1) + rng.normal(0, 8, (h, w, 3))
    img[h // 4 : h // 2, w // 5 : w // 2] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def full_path(path, imgsz):
    """What the datasets did before: decode in full, then an area resize to the long side."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return resize_long_side(Sample(img), imgsz).image


@pytest.mark.parametrize(
    "size, long_side, factor",
    [
        ((4032, 3024), 640, 4),
        ((4032, 3024), 320, 8),
        ((1280, 960), 640, 1),
        ((1282, 960), 640, 2),
        ((1281, 960), 640, 1),
        ((900, 3000), 640, 4),
    ],
)
def test_the_factor_keeps_the_long_side_above_the_target(size, long_side, factor):
    assert reduction(size, long_side) == factor
    assert factor == 1 or max(size) // factor > long_side


def test_a_large_jpeg_is_decoded_reduced_and_resizes_to_the_same_picture(tmp_path):
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), photo(1200, 1700), [cv2.IMWRITE_JPEG_QUALITY, 95])
    reduced = read_scaled(path, (1700, 1200), 320)
    assert reduced.shape == (300, 425, 3)  # 1/4: 425 px is still above 320, 1/8 (212) would not be
    fast = resize_long_side(Sample(reduced), 320).image
    slow = full_path(path, 320)
    assert fast.shape == slow.shape == (226, 320, 3)
    diff = np.abs(fast.astype(np.int16) - slow)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 12  # an area average either way


def test_other_formats_and_small_jpegs_are_decoded_in_full(tmp_path):
    img = photo(1200, 1700)
    cv2.imwrite(str(tmp_path / "big.png"), img)
    (tmp_path / "png_named.jpg").write_bytes((tmp_path / "big.png").read_bytes())
    cv2.imwrite(str(tmp_path / "small.jpg"), img[:500, :600])
    assert read_scaled(tmp_path / "big.png", (1700, 1200), 320).shape == (1200, 1700, 3)
    assert read_scaled(tmp_path / "png_named.jpg", (1700, 1200), 320).shape == (1200, 1700, 3)  # judged by its bytes
    assert read_scaled(tmp_path / "small.jpg", (600, 500), 320).shape == (500, 600, 3)  # 600 // 2 = 300: not above 320
    assert read_scaled(tmp_path / "missing.jpg", (1700, 1200), 320) is None


def test_the_exif_orientation_is_applied_as_in_a_full_decode(tmp_path):
    path = tmp_path / "sideways.jpg"
    im = Image.fromarray(photo(1200, 1700)[..., ::-1])
    exif = im.getexif()
    exif[0x0112] = 6  # stored landscape, displayed portrait (rotated 90° clockwise)
    im.save(path, exif=exif, quality=95)
    reduced = read_scaled(path, (1200, 1700), 320)  # (w, h) as displayed
    assert reduced.shape[:2] == (1700 // 4, 1200 // 4)
    fast = resize_long_side(Sample(reduced), 320).image
    slow = full_path(path, 320)
    assert fast.shape == slow.shape and np.abs(fast.astype(np.int16) - slow).mean() < 1.5


@pytest.fixture
def decode_flags(monkeypatch):
    """The flags every cv2.imread call was made with."""
    flags, imread = [], cv2.imread

    def spy(path, flag=cv2.IMREAD_COLOR):
        flags.append(flag)
        return imread(path, flag)

    monkeypatch.setattr(cv2, "imread", spy)
    return flags


def test_detection_boxes_stay_on_their_object(tmp_path, decode_flags):
    root = tmp_path / "d"
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    cv2.imwrite(str(root / "images/val/big.jpg"), photo(1200, 1700), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "labels/val/big.txt").write_text(f"0 {0.35:.6f} {0.375:.6f} {0.3:.6f} {0.25:.6f}\n")
    args = resolve({})
    ds = DetectionDataset(sorted((root / "images/val").glob("*.jpg")), ["a"], 320, False, args, verbose=False)
    sample = ds.sample(0)
    assert decode_flags[-1] == cv2.IMREAD_REDUCED_COLOR_4  # decoded at 425×300, not 1700×1200
    assert sample.image.shape == (226, 320, 3)
    _, x1, y1, x2, y2 = sample.boxes[0]
    inside = sample.image[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
    assert inside.min() > 230  # the bright rectangle fills the box
    assert np.abs(sample.image.astype(np.int16) - full_path(root / "images/val/big.jpg", 320)).mean() < 1.5


def test_a_full_size_mask_is_resized_with_a_reduced_image(tmp_path, decode_flags):
    root = tmp_path / "s"
    (root / "images/val").mkdir(parents=True)
    (root / "masks/val").mkdir(parents=True)
    img = photo(1200, 1700)
    mask = np.zeros((1200, 1700), np.uint8)
    mask[300:600, 340:850] = 1  # exactly the bright rectangle
    cv2.imwrite(str(root / "images/val/big.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(root / "masks/val/big.png"), mask)
    write_data_yaml(root / "data.yaml", {"path": ".", "val": "images/val", "names": ["a"]})
    ds = SegmentationDataset(sorted((root / "images/val").glob("*.jpg")), 2, 320, False, resolve({}), verbose=False)
    sample = ds.sample(0)
    assert cv2.IMREAD_REDUCED_COLOR_4 in decode_flags
    assert sample.image.shape[:2] == sample.mask.shape == (226, 320)
    bright = sample.image.min(2) > 200
    labelled = sample.mask == 1
    assert (bright & labelled).sum() / (bright | labelled).sum() > 0.95


def test_classification_keeps_enough_pixels_for_its_smallest_crop():
    assert classify_decode_side(224, False, {"crop_scale": 0.08}) == 224  # validation: a square resize
    assert classify_decode_side(224, True, {"crop_scale": 1.0}) == 224
    assert classify_decode_side(224, True, {"crop_scale": 0.25}) == 448  # a crop of 1/4 the area: half the side


@pytest.mark.parametrize("channels", [3, 1])
def test_classification_images_are_decoded_reduced_by_their_short_side(tmp_path, decode_flags, channels):
    root = tmp_path / "c" / "train"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        cv2.imwrite(str(root / cls / "wide.jpg"), photo(600, 2400), [cv2.IMWRITE_JPEG_QUALITY, 95])
    ds = ImageFolderDataset(root, channels=channels, decode_side=100)
    assert ds.sizes == [(2400, 600), (2400, 600)]
    x, cls = ds[1]
    # 4:1 — the long side must stay above 400 for the short one to keep 100: 1/4 (600×150), not 1/8 (300×75)
    assert tuple(x.shape) == (channels, 150, 600) and cls == 1
    assert decode_flags[-1] == (cv2.IMREAD_REDUCED_GRAYSCALE_4 if channels == 1 else cv2.IMREAD_REDUCED_COLOR_4)
    full = ImageFolderDataset(root, channels=channels)[1][0]  # no decode_side: decoded in full, as before
    assert tuple(full.shape) == (channels, 600, 2400)
    small = cv2.resize(full.permute(1, 2, 0).numpy(), (600, 150), interpolation=cv2.INTER_AREA).reshape(150, 600, -1)
    assert np.abs(small.astype(np.int16) - x.permute(1, 2, 0).numpy()).mean() < 2.0  # the same picture, RGB order


@pytest.mark.parametrize("rect", [False, True])
def test_predict_inputs_map_back_to_the_original_photo(tmp_path, monkeypatch, decode_flags, rect):
    """letterbox_batch decodes a large JPEG reduced; its context still maps letterboxed pixels to the original
    photo's pixels as the full decode's does."""
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), photo(1200, 1700), [cv2.IMWRITE_JPEG_QUALITY, 95])
    fast, (fast_ctx,) = letterbox_batch([path], 320, rect)
    assert decode_flags[-1] == cv2.IMREAD_REDUCED_COLOR_4
    monkeypatch.setattr(decode, "reduction", lambda size, long_side: 1)
    full, (full_ctx,) = letterbox_batch([path], 320, rect)
    assert decode_flags[-1] == cv2.IMREAD_COLOR
    assert fast.shape == full.shape and (fast - full).abs().mean() < 2 / 255
    assert fast_ctx["shape"] == full_ctx["shape"] == (1200, 1700) and fast_ctx["pad"] == full_ctx["pad"]
    box = content_box(fast_ctx["shape"], fast_ctx["scale"], fast_ctx["pad"])
    assert box == content_box(full_ctx["shape"], full_ctx["scale"], full_ctx["pad"])
    lb_box = torch.tensor([[40.0, 30.0, 160.0, 120.0]])  # letterboxed pixels
    one = torch.ones(1)
    got = DetectTask._to_original(lb_box, one, one, fast_ctx)["boxes"]
    want = DetectTask._to_original(lb_box, one, one, full_ctx)["boxes"]
    assert np.abs(got - want).max() < 1.0  # under a pixel of the 1700×1200 photo


def test_predict_inputs_of_frames_and_truncated_files_are_as_before(tmp_path):
    frame = photo(1200, 1700)
    _, (ctx,) = letterbox_batch([frame], 320, False)
    assert ctx["shape"] == (1200, 1700) and ctx["scale"][0] == ctx["scale"][1]
    cut = tmp_path / "cut.jpg"
    ok, data = cv2.imencode(".jpg", frame)
    cut.write_bytes(data.tobytes()[: len(data) // 2])  # no end marker: the size check refuses it, OpenCV decodes it
    batch, (ctx,) = letterbox_batch([cut], 320, False)
    assert ctx["shape"] == (1200, 1700) and batch.shape == (1, 3, 320, 320)

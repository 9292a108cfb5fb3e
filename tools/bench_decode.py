#!/usr/bin/env python
"""Benchmark: reading phone-sized JPEGs for training. visionkit decodes a JPEG at 1/2, 1/4 or 1/8 of its size when
its long side stays above imgsz (visionkit/data/decode.py); the full decode followed by the same area resize is
what it did before, and what Ultralytics' loader does (cv2.imread, then resize). Per size: milliseconds per image
(median of --repeats, one OpenCV thread), the ratio, and the mean absolute difference between the two pictures;
then training samples per second of a detection dataset (mosaic of four images) and a classification folder
(random-resized crops) with and without it, and yolo-n's predict time per photo.

    python tools/bench_decode.py [--imgsz 640] [--repeats 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {"12 MP (4032x3024)": (4032, 3024), "8 MP (3264x2448)": (3264, 2448), "1080p": (1920, 1080), "VGA": (640, 480)}


def photo_like(w: int, h: int, seed: int) -> np.ndarray:
    """Gradients, sensor-like noise and filled shapes: compresses like a photo (about 3 MB at 12 MP, quality 92)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1) + rng.normal(0, 12, (h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(30):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(img, centre, int(rng.integers(w // 80, w // 8)), colour, -1)
    return img


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    import torch

    from visionkit.api import Model
    from visionkit.cfg import resolve
    from visionkit.data import decode
    from visionkit.data.decode import read_scaled
    from visionkit.data.format import write_data_yaml
    from visionkit.data.transforms import Sample, resize_long_side
    from visionkit.tasks.classify.task import ClassifyTask
    from visionkit.tasks.detect.task import DetectTask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    cv2.setNumThreads(1)  # as in a loader worker
    print(f"imgsz {a.imgsz}, one OpenCV thread, median of {a.repeats}")
    print(f"{'JPEG':<20} {'full decode ms':>15} {'visionkit ms':>13} {'ratio':>7} {'mean |diff|':>12}")
    with tempfile.TemporaryDirectory(prefix="vk-bench-decode-") as tmp:
        for name, (w, h) in SIZES.items():
            path = Path(tmp) / f"{w}x{h}.jpg"
            cv2.imwrite(str(path), photo_like(w, h, 0), [cv2.IMWRITE_JPEG_QUALITY, 92])

            def full(path=path):
                return resize_long_side(Sample(cv2.imread(str(path), cv2.IMREAD_COLOR)), a.imgsz).image

            def fast(path=path, size=(w, h)):
                return resize_long_side(Sample(read_scaled(path, size, a.imgsz)), a.imgsz).image

            t_full, t_fast = median_ms(full, a.repeats), median_ms(fast, a.repeats)
            diff = np.abs(full().astype(np.int16) - fast()).mean()
            print(f"{name:<20} {t_full:>15.1f} {t_fast:>13.1f} {t_fast / t_full:>7.2f} {diff:>12.2f}")

        root = Path(tmp) / "ds"
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for i in range(8):
            cv2.imwrite(str(root / "images" / f"{i}.jpg"), photo_like(4032, 3024, i), [cv2.IMWRITE_JPEG_QUALITY, 92])
            (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        write_data_yaml(root / "data.yaml", {"path": ".", "train": "images", "val": "images", "names": ["a"]})
        task = DetectTask()
        args = resolve({"data": str(root / "data.yaml"), "mosaic": 1.0, "verbose": False}, task.keys)
        ds = task.build_dataset(task.resolve_data(args), "train", a.imgsz, True, args)  # as training builds it
        rates = samples_per_second(ds, decode)
        print(
            f"detection training samples/s, 12 MP JPEGs, mosaic, one process: full decode "
            f"{rates['full decode']:.2f}, visionkit {rates['visionkit']:.2f} "
            f"(x{rates['visionkit'] / rates['full decode']:.2f})"
        )
        for cls in ("a", "b"):  # the same photos as a classification folder
            (root / "classify" / "train" / cls).mkdir(parents=True)
            for i in range(4):
                shutil.copy(root / "images" / f"{i}.jpg", root / "classify" / "train" / cls / f"{i}.jpg")
        task = ClassifyTask()
        args = resolve({"data": str(root / "classify"), "verbose": False}, task.keys)
        size = min(a.imgsz, 224)
        ds = task.build_dataset(task.resolve_data(args), "train", size, True, args)
        rates = samples_per_second(ds, decode)
        print(
            f"classification training samples/s at {size}, 12 MP JPEGs, random-resized crops, one process: full "
            f"decode {rates['full decode']:.2f}, visionkit {rates['visionkit']:.2f} "
            f"(x{rates['visionkit'] / rates['full decode']:.2f})"
        )
        predict_ms = {}
        model = Model("yolo-n")  # one tiny epoch: predict needs a checkpoint; the time does not depend on training
        model.train(data=str(root / "data.yaml"), epochs=1, imgsz=64, batch=8, workers=0, val=False, plots=False,
                    verbose=False, project=str(Path(tmp) / "runs"), name="bench")  # fmt: skip
        photos = [str(p) for p in sorted((root / "images").glob("*.jpg"))]
        model.predict(photos[:1], imgsz=a.imgsz, verbose=False, save=False)
        for label, full in (("full decode", True), ("visionkit", False)):
            with decoding(decode, full):
                start = time.perf_counter()
                model.predict(photos, imgsz=a.imgsz, verbose=False, save=False)
                predict_ms[label] = (time.perf_counter() - start) / len(photos) * 1000
        print(
            f"yolo-n predict per 12 MP JPEG at {a.imgsz} ({torch.get_num_threads()} threads): full decode "
            f"{predict_ms['full decode']:.0f} ms, visionkit {predict_ms['visionkit']:.0f} ms "
            f"(x{predict_ms['full decode'] / predict_ms['visionkit']:.2f} faster)"
        )


def samples_per_second(ds, decode) -> dict[str, float]:
    """Items per second of ``ds`` with the full decode (the reduction forced to 1) and with visionkit's."""
    rates = {}
    for label, full in (("full decode", True), ("visionkit", False)):
        with decoding(decode, full):
            start, n = time.perf_counter(), 2 * len(ds)
            for i in range(n):
                ds[i % len(ds)]
            rates[label] = n / (time.perf_counter() - start)
    return rates


@contextmanager
def decoding(decode, full: bool):
    """Inside: every image decoded in full (``full``, the reduction forced to 1) or as visionkit decodes it."""
    original = decode.reduction
    if full:
        decode.reduction = lambda size, long_side: 1
    try:
        yield
    finally:
        decode.reduction = original


if __name__ == "__main__":
    main()

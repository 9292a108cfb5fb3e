"""Joint augmentation speed: visionkit's OpenCV chain vs the same chain in torchvision.transforms.v2 (tv_tensors).

One sample = a 320 px photo-like image, its boxes and its semantic mask, through letterbox → random affine
(rotation, scale, translation) → HSV / colour jitter → horizontal flip. Both chains move the boxes and the mask
with the image. Prints per-sample milliseconds (median of --repeats after a warm-up) and the ratio.

    python tools/bench_transforms.py [--size 320] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from visionkit.data.transforms import Sample, hsv_jitter, letterbox_sample, random_affine, random_flips


def make_sample(size: int, rng: np.random.Generator) -> Sample:
    h, w = size * 3 // 4, size
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    boxes = []
    for k in range(8):
        x1, y1 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        x2, y2 = x1 + rng.integers(10, 40), y1 + rng.integers(10, 40)
        mask[y1:y2, x1:x2] = k % 4 + 1
        boxes.append([k % 4, x1, y1, x2, y2])
    return Sample(image, np.asarray(boxes, np.float32), mask=mask)


def visionkit_chain(sample: Sample, size: int, rng: np.random.Generator) -> Sample:
    sample, _, _ = letterbox_sample(sample, size)
    sample = random_affine(sample, rng, size, degrees=10.0, scale=0.5, translate=0.1)
    sample = hsv_jitter(sample, rng, 0.015, 0.7, 0.4)
    return random_flips(sample, rng, 0.5, 0.0)


def torchvision_chain(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.Resize(size - 1, max_size=size, antialias=True),
            v2.Pad([0, 0, 0, size // 4], fill=114),
            v2.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.5, 1.5), fill=114),
            v2.ColorJitter(brightness=0.4, saturation=0.7, hue=0.015),
            v2.RandomHorizontalFlip(0.5),
            v2.SanitizeBoundingBoxes(labels_getter=lambda inputs: inputs[1]["labels"]),
        ]
    )


def timed(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    rng = np.random.default_rng(0)
    base = make_sample(a.size, rng)

    def ours():
        s = Sample(base.image.copy(), base.boxes.copy(), mask=base.mask.copy())
        return visionkit_chain(s, a.size, rng)

    tv = torchvision_chain(a.size)
    h, w = base.hw

    def theirs():
        img = tv_tensors.Image(torch.from_numpy(base.image).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(base.boxes[:, 1:]), format="XYXY", canvas_size=(h, w))
        mask = tv_tensors.Mask(torch.from_numpy(base.mask))
        return tv(img, {"boxes": boxes, "masks": mask, "labels": torch.from_numpy(base.boxes[:, 0])})

    ms_ours, ms_tv = timed(ours, a.repeats), timed(theirs, a.repeats)
    print(f"joint augmentation of one {a.size}px sample (image + 8 boxes + mask), median of {a.repeats}, 1 thread:")
    print(f"  visionkit (OpenCV)            {ms_ours:7.2f} ms")
    print(f"  torchvision.transforms.v2     {ms_tv:7.2f} ms")
    print(f"  ratio torchvision / visionkit {ms_tv / ms_ours:7.2f}x")


if __name__ == "__main__":
    main()

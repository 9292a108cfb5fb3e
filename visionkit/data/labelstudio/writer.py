"""Writing imported samples in the one dataset format: images, YOLO rows, class-id masks (later regions paint
over earlier ones) and the ImageFolder tree of choices."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from visionkit.data.format import fill_polygon, write_label_file, write_mask


def write_samples(samples, root: Path, has_objects: bool, has_masks: bool, has_choices: bool, choice_names) -> Counter:
    """Write every sample (an importer's Sample: name, split, source or data, rows, regions, choice, size) under
    ``root``; returns the number of images per split."""
    splits: Counter = Counter()
    for s in samples:
        img = root / "images" / s.split / s.name
        img.parent.mkdir(parents=True, exist_ok=True)
        if s.source is not None:
            shutil.copyfile(s.source, img)
        else:
            img.write_bytes(s.data)
        stem = Path(s.name).stem
        if has_objects:
            write_label_file(root / "labels" / s.split / f"{stem}.txt", s.rows)
        if has_masks:
            w, h = s.size
            mask = np.zeros((h, w), np.uint8)
            for kind, cls, payload in s.regions:  # later regions paint over earlier ones
                if kind == "polygon":
                    fill_polygon(mask, payload, cls + 1)
                else:
                    mask[payload] = cls + 1
            write_mask(root / "masks" / s.split / f"{stem}.png", mask)
        if has_choices and s.choice is not None:
            dst = root / "classify" / s.split / s.choice / s.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(img, dst)
            except OSError:
                shutil.copyfile(img, dst)
        splits[s.split] += 1
    if has_choices:
        for split in splits:
            for c in choice_names:
                (root / "classify" / split / c).mkdir(parents=True, exist_ok=True)
    return splits

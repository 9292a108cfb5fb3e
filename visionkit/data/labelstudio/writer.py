"""Writing imported samples in the one dataset format: images, YOLO rows, the exact masks of objects that a
polygon row cannot hold (instances/, by row line), class-id masks (later regions paint over earlier ones) and the
ImageFolder tree of choices."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from visionkit.data.format import fill_polygon, write_label_file, write_mask
from visionkit.data.instances import write_instances


def write_samples(samples, root: Path, has_objects: bool, has_masks: bool, has_choices: bool, choice_names) -> Counter:
    """Write every sample (an importer's Sample: name, split, source or data, rows, exact, regions, choice, size)
    under ``root``; returns the number of images per split. ``exact`` maps a row's 1-based line to its bool mask
    (instances/<split>/<stem>.json, written only when the sample has one)."""
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
            exact = getattr(s, "exact", None)
            if exact:
                w, h = s.size
                write_instances(root / "instances" / s.split / f"{stem}.json", h, w, exact)
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

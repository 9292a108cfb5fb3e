"""Detection data: YOLO-layout images + labels and a label cache. Geometry and augmentation (letterbox, mosaic,
random affine, HSV, flips, mixup, cutout) are the shared joint transforms of visionkit/data/transforms.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.cfg import Settings
from visionkit.data.decode import read_scaled
from visionkit.data.format import clipped_box, image_size, read_label_file, sidecar_path
from visionkit.data.ram_cache import check_ram_cache, resized_bytes
from visionkit.data.transforms import Sample, letterbox_sample, rect_shapes, train_augment
from visionkit.errors import DataError

CACHE_VERSION = 2  # 2: image sizes with the EXIF orientation applied


def load_labels(files: list[Path], num_classes: int, cache_dir: Path | None) -> dict:
    """Parse every label file once; later runs read ``labels.cache.json`` unless a file changed (size or mtime).

    Returns {'labels': [array (n, 5) cls cx cy w h], 'shapes': [(w, h)], 'files': [...], 'skipped': [...],
    'fixed': n boxes clipped, 'dropped': n boxes dropped}.
    """
    stamp = hashlib.sha1()
    for f in files:
        for p in (f, sidecar_path(f)):
            try:
                st = p.stat()
                stamp.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
            except FileNotFoundError:
                stamp.update(f"{p}:-;".encode())
    stamp.update(f"{num_classes}:{CACHE_VERSION}".encode())
    cache_file = cache_dir / "labels.cache.json" if cache_dir else None
    if cache_file and cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
            if isinstance(cached, dict) and cached.get("hash") == stamp.hexdigest():
                cached["labels"] = [np.asarray(a, dtype=np.float32).reshape(-1, 5) for a in cached["labels"]]
                cached["files"] = [Path(f) for f in cached["files"]]
                cached["shapes"] = [(int(w), int(h)) for w, h in cached["shapes"]]
                if not len(cached["labels"]) == len(cached["files"]) == len(cached["shapes"]):
                    raise ValueError("cache lists of different lengths")
                cached["skipped"], cached["fixed"], cached["dropped"] = (
                    list(cached["skipped"]),
                    int(cached["fixed"]),
                    int(cached["dropped"]),
                )
                cached["from_cache"] = True
                return cached
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            pass  # a cache of the wrong shape, version or type, or cut short, is rebuilt
    labels, shapes, kept, skipped = [], [], [], []
    fixed = dropped = 0
    for f in files:
        try:
            size = image_size(f)  # as displayed (EXIF orientation), like cv2.imread decodes it
        except Exception as e:
            skipped.append([str(f), f"{type(e).__name__}: {e}"])
            continue
        rows = read_label_file(sidecar_path(f), num_classes)  # bad class ids raise, naming file and line
        boxes = []
        for cls, coords in rows:
            box, changed = clipped_box(coords, size)
            fixed += changed
            if box is None:
                dropped += 1  # zero-sized or wholly outside the image
                continue
            boxes.append([cls, *box])
        labels.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 5))
        shapes.append(size)
        kept.append(f)
    result = {
        "hash": stamp.hexdigest(),
        "labels": labels,
        "shapes": shapes,
        "files": kept,
        "skipped": skipped,
        "fixed": fixed,
        "dropped": dropped,
        "from_cache": False,
    }
    if cache_file:
        try:
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({**result, "labels": [a.tolist() for a in labels], "files": [str(f) for f in kept]})
            )
            os.replace(tmp, cache_file)
        except OSError as e:  # a read-only dataset just is not cached; a full disk is said (the run goes on)
            tmp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                warnings.warn(f"label cache '{cache_file}' not written: no space left on the device", stacklevel=2)
    return result


class DetectionDataset(Dataset):
    """Items: (image uint8 (3, S, S), targets (n, 5) cls cx cy w h normalised, meta dict)."""

    def __init__(
        self,
        files: list[Path],
        names: list[str],
        imgsz: int,
        train: bool,
        args: Settings,
        cache_dir: Path | None = None,
        verbose: bool = True,
    ):
        info = load_labels(files, len(names), cache_dir)
        if info["skipped"]:
            listed = "; ".join(f"{f} ({r})" for f, r in info["skipped"][:5])
            warnings.warn(f"skipped {len(info['skipped'])} image(s) that do not decode: {listed}", stacklevel=2)
        if verbose and (info["fixed"] or info["dropped"]):
            print(
                f"labels: {info['fixed']} box(es) clipped to the image, {info['dropped']} zero-size or outside "
                f"box(es) dropped"
            )
        self.files, self.labels, self.shapes = info["files"], info["labels"], info["shapes"]
        self.skipped = info["skipped"]
        self.from_cache = info["from_cache"]
        if not self.files:
            raise DataError(f"no readable images among {len(files)} file(s)")
        self.names, self.imgsz, self.train = names, imgsz, train
        self.a = args
        self.mosaic = float(args.mosaic) if train else 0.0
        self.rect = not train and bool(args.rect)
        self.batch_shapes: list[tuple[int, int]] | None = None  # per image, set by prepare_batches (rect)
        if self.rect:  # similar aspect ratios side by side, so that each batch shares one snug shape
            order = sorted(range(len(self.files)), key=lambda i: self.shapes[i][1] / self.shapes[i][0])
            self.files, self.labels, self.shapes = (
                [seq[i] for i in order] for seq in (self.files, self.labels, self.shapes)
            )
        if args.cache:
            check_ram_cache(len(self.files), resized_bytes(self.shapes, imgsz, 3), "train" if train else "val", verbose)
        self._cache = [self._read(i) for i in range(len(self.files))] if args.cache else None

    def prepare_batches(self, batch: int) -> None:
        """Called with the loader's batch size (unshuffled): rectangular batches when ``rect``."""
        if self.rect:
            self.batch_shapes = rect_shapes(self.shapes, self.imgsz, batch)

    def __len__(self) -> int:
        return len(self.files)

    def close_mosaic(self) -> None:
        self.mosaic = 0.0

    def _read(self, i: int) -> np.ndarray:
        img = read_scaled(self.files[i], self.shapes[i], self.imgsz)  # a large JPEG decoded at 1/2-1/8 of its size
        if img is None:
            raise DataError(f"cannot decode image '{self.files[i]}'")
        h, w = img.shape[:2]
        r = self.imgsz / max(h, w)
        if r != 1:
            img = cv2.resize(
                img,
                (max(1, round(w * r)), max(1, round(h * r))),
                interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA,
            )
        return img

    def _load(self, i: int) -> np.ndarray:
        return self._cache[i] if self._cache is not None else self._read(i)

    def sample(self, i: int) -> Sample:
        """Image ``i`` with its long side at imgsz, and its boxes in that image's pixels."""
        img = self._load(i)
        h, w = img.shape[:2]
        w0, h0 = self.shapes[i]
        lab = self.labels[i]
        boxes = np.zeros((len(lab), 5), np.float32)
        if len(lab):
            boxes[:, 0] = lab[:, 0]
            boxes[:, 1] = (lab[:, 1] - lab[:, 3] / 2) * w
            boxes[:, 2] = (lab[:, 2] - lab[:, 4] / 2) * h
            boxes[:, 3] = (lab[:, 1] + lab[:, 3] / 2) * w
            boxes[:, 4] = (lab[:, 2] + lab[:, 4] / 2) * h
        return Sample(img, boxes)

    def __getitem__(self, i: int):
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())  # follows torch's seeding
        if self.train:
            aug = train_augment(i, self.sample, len(self), self.imgsz, rng, self.a, self.mosaic)
            meta = {"index": i}
        else:
            aug, meta = self._letterboxed(i)
        img, boxes = aug.image, aug.boxes
        targets = normalised_targets(boxes, *img.shape[:2])
        rgb = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(targets), meta

    def _letterboxed(self, i: int) -> tuple[Sample, dict]:
        sample = self.sample(i)
        h1, w1 = sample.hw
        w0, h0 = self.shapes[i]
        size = self.batch_shapes[i] if self.batch_shapes is not None else self.imgsz
        sample, r, pad = letterbox_sample(sample, size)
        scale = (r * w1 / w0, r * h1 / h0)  # original pixels → letterboxed pixels, per axis
        return sample, {
            "index": i,
            "file": str(self.files[i]),
            "shape": (h0, w0),
            "scale": scale,
            "pad": pad,
            "gt": self.labels[i],
        }


def normalised_targets(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, 5) class, x1, y1, x2, y2 in pixels of an h×w image → (n, 5) class, cx, cy, w, h normalised to it."""
    targets = np.zeros((len(boxes), 5), np.float32)
    if len(boxes):
        targets[:, 0] = boxes[:, 0]
        targets[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2 / w
        targets[:, 2] = (boxes[:, 2] + boxes[:, 4]) / 2 / h
        targets[:, 3] = (boxes[:, 3] - boxes[:, 1]) / w
        targets[:, 4] = (boxes[:, 4] - boxes[:, 2]) / h
    return targets


def collate(batch):
    """Stack images; targets become (T, 6) rows of batch index, class, cx, cy, w, h."""
    images, targets, metas = zip(*batch)
    rows = [torch.cat([torch.full((len(t), 1), float(i)), t], 1) for i, t in enumerate(targets)]
    return torch.stack(images), torch.cat(rows) if rows else torch.zeros(0, 6), list(metas)

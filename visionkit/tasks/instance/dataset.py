"""Instance data: the detection dataset's images and label rows, with each object's exact mask (its polygon row,
or its entry in ``instances/``: visionkit/data/instances.py). Objects travel through the shared joint transforms as
one id map (``Sample.instances``), so mosaic, affine, flips and letterbox move every mask with the image; after
them, each object's box is the extent of its visible pixels, and one cut to nothing (or under 2 px) is dropped
with its mask."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.data.instances import ImageObjects, image_objects
from visionkit.data.transforms import Sample, train_augment
from visionkit.errors import DataError
from visionkit.tasks.detect.dataset import DetectionDataset, normalised_targets

MASK_RATIO = 4  # training masks are kept at 1/4 of the input size (the prototypes' resolution)
MIN_SIDE = 2.0  # an object under 2 px wide or high after augmentation is dropped (as detection drops its box)


def id_map(objects: ImageObjects, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint the objects into a uint16 id map (object k → k + 1), larger objects first so a small object in front
    of a large one keeps its pixels. Returns (id map, class per id)."""
    from pycocotools import mask as mask_utils

    ids = np.zeros((height, width), np.uint16)
    if not objects.rles:
        return ids, objects.classes
    order = np.argsort(-mask_utils.area(objects.rles).astype(np.int64), kind="stable")
    boxes = mask_utils.toBbox(objects.rles).astype(np.int64)  # x, y, w, h: paint each object in its box only
    for k, i in enumerate(order):
        x, y, w, h = boxes[i]
        piece = mask_utils.decode(objects.rles[i])[y : y + h, x : x + w]  # one object at a time: bounded memory
        ids[y : y + h, x : x + w][piece > 0] = k + 1
    return ids, objects.classes[order]


def objects_from_ids(ids: np.ndarray, classes: np.ndarray, ratio: int = MASK_RATIO):
    """The objects left in an augmented id map: boxes (n, 5) class x1 y1 x2 y2 in pixels and masks (n, H/ratio,
    W/ratio) uint8, each pixel the share of it the object covers (0..255)."""
    h, w = ids.shape
    mh, mw = max(1, h // ratio), max(1, w // ratio)
    boxes, masks = [], []
    for k in np.unique(ids[ids > 0]):
        m = ids == k
        ys = np.flatnonzero(m.any(1))
        xs = np.flatnonzero(m.any(0))
        x1, y1, x2, y2 = xs[0], ys[0], xs[-1] + 1, ys[-1] + 1
        if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
            continue
        boxes.append([classes[k - 1], x1, y1, x2, y2])
        masks.append(cv2.resize(m.astype(np.uint8) * 255, (mw, mh), interpolation=cv2.INTER_AREA))
    return (
        np.asarray(boxes, np.float32).reshape(-1, 5),
        np.stack(masks) if masks else np.zeros((0, mh, mw), np.uint8),
    )


class InstanceDataset(DetectionDataset):
    """Items: (image uint8 (3, S, S), targets (n, 5) cls cx cy w h normalised, masks (n, S/4, S/4) uint8, meta);
    a validation item's meta also holds the objects at the original size (``objects``) for COCO scoring."""

    def __init__(
        self,
        files: list[Path],
        names: list[str],
        imgsz: int,
        train: bool,
        args: Settings,
        cache_dir=None,
        verbose: bool = True,
    ):
        super().__init__(files, names, imgsz, train, args, cache_dir, verbose)
        self.objects = [image_objects(f, size, len(names)) for f, size in zip(self.files, self.shapes)]
        boxes_only = sum(o.boxes_only for o in self.objects)
        empty = sum(o.empty for o in self.objects)
        if boxes_only or empty:
            warnings.warn(
                f"{boxes_only} object(s) have a box row but no polygon or mask and {empty} have a mask with no "
                f"pixel: instance segmentation cannot train them, so they are left out (give them polygons, or "
                f"re-import brush/RLE masks)",
                stacklevel=2,
            )
        if not any(len(o.classes) for o in self.objects) and not args.allow_empty:
            raise DataError(
                f"none of the {len(self.files)} image(s) has an object with a polygon or mask (box rows only?); "
                f"instance segmentation needs masks: polygon rows or instances/ files (docs/dataset-format.md)"
            )

    def sample(self, i: int) -> Sample:
        """Image ``i`` with its long side at imgsz and its objects as an id map of the same size."""
        img = self._load(i)
        h, w = img.shape[:2]
        w0, h0 = self.shapes[i]
        ids, classes = id_map(self.objects[i], h0, w0)
        if (h, w) != (h0, w0):
            ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)  # unbiased: pixel centres
        return Sample(img, instances=ids, instance_classes=classes)

    def __getitem__(self, i: int):
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())  # follows torch's seeding
        if self.train:
            aug = train_augment(i, self.sample, len(self), self.imgsz, rng, self.a, self.mosaic)
            meta = {"index": i}
        else:
            aug, meta = self._letterboxed(i)
            meta["objects"] = self.objects[i]
        img = aug.image
        h, w = img.shape[:2]
        meta["input_hw"] = (h, w)
        boxes, masks = objects_from_ids(aug.instances, aug.instance_classes)
        targets = normalised_targets(boxes, h, w)
        rgb = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(rgb), torch.from_numpy(targets), torch.from_numpy(masks), meta


def collate(batch):
    """Stack images; targets become (T, 6) rows of batch index, class, cx, cy, w, h, in image order; masks (T, h, w)
    follow the same rows."""
    images, targets, masks, metas = zip(*batch)
    rows = [torch.cat([torch.full((len(t), 1), float(i)), t], 1) for i, t in enumerate(targets)]
    return torch.stack(images), torch.cat(rows), torch.cat(masks), list(metas)

"""Dataset views used by the tasks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data.decode import read_scaled
from visionkit.data.format import class_folders, image_size, list_images, unreadable_images, unreadable_message
from visionkit.errors import DataError


def read_image(
    path: str | Path, channels: int = 3, size: tuple[int, int] | None = None, long_side: int | None = None
) -> np.ndarray:
    """Decode an image as RGB (H, W, 3) or grey (H, W, 1) uint8; raises DataError naming the file. With its
    ``size`` (w, h) and the ``long_side`` it will be used at, a large JPEG is decoded at a reduced size
    (visionkit.data.decode)."""
    if size is not None and long_side is not None:
        img = read_scaled(path, size, long_side, grey=channels == 1)
    else:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image '{path}'")
    if channels == 1:
        return img[..., None]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def probe_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """(its (w, h) as displayed, None) when the file decodes as an image, else (None, the reason it does not)."""
    try:
        return image_size(path), None  # verifies, and refuses a JPEG cut short (which OpenCV would decode half grey)
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


class FileListDataset(Dataset):
    """(image path, class id) pairs, each verified first: a file that does not decode (a JPEG cut short too) is
    skipped with one warning and counted in ``skipped``. Items are ``transform`` of the uint8 (C, H, W) tensor;
    ``cache`` decodes every image once into RAM (refused when it would not fit). ``decode_side``: the short side
    the transform needs at most (it resizes or crops to a square); larger JPEGs are decoded at 1/2-1/8 of their
    size while their short side stays above it."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        names: list[str],
        transform: Callable | None = None,
        channels: int = 3,
        cache: bool = False,
        fraction: float = 1.0,
        where: str = "the dataset",
        decode_side: int | None = None,
    ):
        self.names, self.transform, self.channels, self.decode_side = names, transform, channels, decode_side
        self.samples: list[tuple[Path, int]] = []
        self.sizes: list[tuple[int, int]] = []  # (w, h) as displayed, per sample
        self.skipped: list[tuple[Path, str]] = []
        for f, cls in samples:
            size, reason = probe_image(f)
            if reason:
                self.skipped.append((f, reason))
            else:
                self.samples.append((f, cls))
                self.sizes.append(size)
        if self.skipped:
            listed = "; ".join(f"{p} ({r})" for p, r in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            warnings.warn(f"skipped {len(self.skipped)} corrupt image(s) in {where}: {listed}{more}", stacklevel=3)
        if fraction < 1.0:
            keep = np.random.default_rng(0).permutation(len(self.samples))[: max(1, int(len(self.samples) * fraction))]
            self.samples = [self.samples[i] for i in sorted(keep)]
            self.sizes = [self.sizes[i] for i in sorted(keep)]
        if not self.samples:
            raise DataError(f"no readable images in '{where}'")
        if cache:  # estimated from a sample of the images' sizes (decoded at full size)
            from visionkit.data.ram_cache import check_ram_cache

            probe = self.sizes[:: max(1, len(self.sizes) // 16)]
            per_image = sum(w * h for w, h in probe) / len(probe) * channels
            check_ram_cache(len(self.samples), int(per_image * len(self.samples)), Path(where).name)
        self._cache = [self._read(i) for i in range(len(self.samples))] if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [c for _, c in self.samples]

    def _read(self, i: int) -> np.ndarray:
        size, long_side = self.sizes[i], None
        if self.decode_side:  # the long side that keeps the short one at decode_side
            long_side = math.ceil(self.decode_side * max(size) / max(1, min(size)))
        return read_image(self.samples[i][0], self.channels, size, long_side)

    def __getitem__(self, i: int):
        cls = self.samples[i][1]
        img = self._cache[i] if self._cache is not None else self._read(i)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return (self.transform(x) if self.transform else x), cls


class ImageFolderDataset(FileListDataset):
    """``root/<class>/*.jpg``. Corrupt files are skipped with one warning and counted in ``skipped``."""

    def __init__(
        self,
        split_dir: Path,
        names: list[str] | None = None,
        transform: Callable | None = None,
        channels: int = 3,
        cache: bool = False,
        require_all_classes: bool = True,
        fraction: float = 1.0,
        decode_side: int | None = None,
    ):
        split_dir = Path(split_dir)
        if not split_dir.is_dir():
            raise DataError(
                f"classification split folder '{split_dir}' does not exist; expected {split_dir}/<class name>/<images>"
            )
        folders = class_folders(split_dir)
        self.names = names if names is not None else [f.name for f in folders]
        if not self.names:
            raise DataError(f"'{split_dir}' has no class folders; expected {split_dir}/<class name>/<images>")
        unknown = [f.name for f in folders if f.name not in self.names]
        if unknown:
            raise DataError(f"'{split_dir}' has class folders {unknown} not in the training classes {self.names}")
        samples: list[tuple[Path, int]] = []
        empty = []
        for cls, name in enumerate(self.names):
            folder = split_dir / name
            files = list_images(folder) if folder.is_dir() else []
            if not files:
                empty.append(str(folder))
            samples += [(f, cls) for f in files]
        unreadable = unreadable_images(
            f for name in self.names if (split_dir / name).is_dir() for f in (split_dir / name).iterdir() if f.is_file()
        )
        if unreadable:
            warnings.warn(unreadable_message(unreadable, str(split_dir)), stacklevel=2)
        if empty and require_all_classes:
            raise DataError(f"class folder(s) with no images: {', '.join(empty)}. Add images or remove the folder.")
        if empty:
            warnings.warn(f"no images for class folder(s): {', '.join(empty)}", stacklevel=2)
        super().__init__(samples, self.names, transform, channels, cache, fraction, str(split_dir), decode_side)


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W) or (N, H, W, C), with integer labels.

    Items are raw uint8 tensors; ``batch_transform`` (e.g. BatchAugment) runs once per batch in ``collate_fn``,
    which is far cheaper than per-image transforms for small images such as MNIST digits.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        names: list[str],
        batch_transform: Callable | None = None,
        fraction: float = 1.0,
    ):
        if images.ndim == 3:
            images = images[..., None]
        if fraction < 1.0:
            keep = np.sort(np.random.default_rng(0).permutation(len(images))[: max(1, int(len(images) * fraction))])
            images, labels = images[keep], labels[keep]
        self.images = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2)  # N, C, H, W (writable)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.names = names
        self.batch_transform = batch_transform
        self.skipped: list[tuple[Path, str]] = []

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])

    def __getitems__(self, indices: list[int]):
        # batched fetch (used by DataLoader's auto-collation): one gather instead of a Python loop
        idx = torch.as_tensor(indices)
        return [(self.images[idx], self.labels[idx])]

    def collate_fn(self, items):
        if len(items) == 1 and items[0][0].ndim == 4:  # from __getitems__
            x, y = items[0]
        else:
            x = torch.stack([it[0] for it in items])
            y = torch.as_tensor([it[1] for it in items])
        return (self.batch_transform(x) if self.batch_transform else x), y

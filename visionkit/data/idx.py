"""MNIST-style IDX files (the format of MNIST and Fashion-MNIST), read from local files only."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from visionkit.errors import DataError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "t-shirt/top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ],
}
# where each named set may already lie on this machine besides ``datasets/NAME`` and ``root=``
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}
# per-channel statistics of the training sets (pixel values in [0, 1])
IDX_NORM = {"mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,))}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file '{path}': {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"'{path}' is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"'{path}' is truncated: expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(dims)


def find_idx_dir(name: str, candidates: list[Path]) -> Path:
    """First folder in ``candidates`` (then the system folders) holding all four IDX files, gzipped or not."""
    dirs = [Path(c) for c in candidates] + [Path(d) for d in SYSTEM_DIRS.get(name, [])]
    for d in dirs:
        if all(_idx_path(d, f) is not None for pair in IDX_FILES.values() for f in pair):
            return d
    expected = ", ".join(f + "[.gz]" for pair in IDX_FILES.values() for f in pair)
    raise DataError(
        f"{name}: IDX files not found (visionkit never downloads data). Looked in: "
        f"{', '.join(str(d) for d in dirs)}. Put {expected} in one of those folders, or pass root=FOLDER."
    )


def load_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` (train, or val = the test set)."""
    img_name, lbl_name = IDX_FILES["val" if split in ("val", "test") else "train"]
    images = read_idx(_idx_path(folder, img_name))
    labels = read_idx(_idx_path(folder, lbl_name)).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels in the {split} split")
    return images, labels


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None

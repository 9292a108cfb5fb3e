"""CIFAR-10 from its standard python-pickle batches in a local folder, read with a restricted unpickler.

The official "python version" (cifar-10-python.tar.gz) holds ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and
``batches.meta``, each a pickled dict. A pickle can run any code when loaded, so these files are never given to
``pickle.load``: :class:`_BatchUnpickler` resolves only the few numpy globals that rebuild an array and refuses
every other one, naming the file and the global. Nothing is downloaded unless the caller asks (``download=True``,
through torchvision).
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import DataError

CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"], "meta": ["batches.meta"]}
CIFAR10_SUBDIR = "cifar-10-batches-py"  # what the official archive (and torchvision) unpacks to
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
# per-channel statistics of the 50,000 training images (pixel values in [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_SHAPE = (3, 32, 32)  # each row of ``data`` is 1024 red, then 1024 green, then 1024 blue values

# The globals an array pickle needs (numpy 1.x names its core ``numpy.core``, numpy 2 ``numpy._core``); protocol-2
# pickles written by Python 3 also encode bytes through ``_codecs.encode``. None of these can reach the file system,
# a subprocess or an import of the pickle's choosing.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _Refused(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.global_name = f"{module}.{name}"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain data (dicts, lists, strings, numbers) and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise _Refused(module, name)
        if module.startswith(("numpy.core", "numpy._core")):
            # whichever numpy is installed: numpy 2 reads numpy-1 pickles and the other way round
            new = "numpy._core" + module[len("numpy.core") :] if module.startswith("numpy.core") else module
            old = "numpy.core" + module[len("numpy._core") :] if module.startswith("numpy._core") else module
            for candidate in (new, old):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except (ImportError, AttributeError):
                    continue
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    """Load one CIFAR batch file with the restricted unpickler; raises DataError naming the file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read CIFAR batch '{path}': {e}") from e
    try:
        # latin1: the official files were pickled by Python 2, whose str is bytes (numpy reads its arrays back so)
        return _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as e:
        raise DataError(
            f"refused to load '{path}': it asks for the Python global '{e.global_name}', which a CIFAR "
            f"batch never needs (a pickle can run code when loaded, so visionkit only rebuilds numpy "
            f"arrays and plain data). Use the official CIFAR-10 python batches ({CIFAR10_URL}) or "
            f"download=True."
        ) from None
    except Exception as e:  # a truncated or foreign file: pickle raises many kinds
        raise DataError(
            f"'{path}' is not a CIFAR python batch ({type(e).__name__}: {e}); expected the pickled "
            f"dicts of cifar-10-python.tar.gz ({CIFAR10_URL})"
        ) from e


def _expected_names() -> list[str]:
    return [f for files in CIFAR10_FILES.values() for f in files]


def find_cifar_dir(candidates: list[Path]) -> Path | None:
    """The first of ``candidates`` (or its ``cifar-10-batches-py/``) holding every CIFAR-10 batch; None if none."""
    for c in candidates:
        for d in (Path(c), Path(c) / CIFAR10_SUBDIR):
            if all((d / f).is_file() for f in _expected_names()):
                return d
    return None


def missing_error(candidates: list[Path]) -> DataError:
    """The error for CIFAR-10 files that are not there: what was looked for, where, and how to get them."""
    looked = ", ".join(f"{c} (or {Path(c) / CIFAR10_SUBDIR})" for c in candidates)
    present = {
        f
        for c in candidates
        for d in (Path(c), Path(c) / CIFAR10_SUBDIR)
        for f in _expected_names()
        if (d / f).is_file()
    }
    missing = [f for f in _expected_names() if f not in present]
    partial = f" Found some but not {', '.join(missing)}." if present else ""
    return DataError(
        f"cifar10: the CIFAR-10 python batches were not found in {looked}.{partial} Expected the files "
        f"{', '.join(_expected_names())}: unpack cifar-10-python.tar.gz from {CIFAR10_URL} and pass root=FOLDER, "
        f"or add download=True to fetch it through torchvision (visionkit never downloads by default)."
    )


def download_cifar10(root: Path) -> Path:
    """Fetch and unpack CIFAR-10 into ``root`` through torchvision (which checks the archive's MD5)."""
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as e:  # torchvision is a dependency, but a trimmed install may lack its datasets
        raise DataError(
            f"download=True needs torchvision.datasets ({e}); download cifar-10-python.tar.gz from "
            f"{CIFAR10_URL} yourself and pass root=FOLDER"
        ) from e
    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(str(root), train=False, download=True)  # the test split: the smallest load after the download
    except (OSError, RuntimeError) as e:
        raise DataError(
            f"downloading CIFAR-10 into '{root}' failed: {e}. Download cifar-10-python.tar.gz from "
            f"{CIFAR10_URL} yourself and pass root=FOLDER"
        ) from e
    found = find_cifar_dir([Path(root)])
    if found is None:
        raise missing_error([Path(root)])
    return found


def _field(d: dict, key: str) -> Any:
    # latin1 gives str keys; a file pickled with bytes keys (encoding="bytes" style) is accepted too
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise KeyError(key)


def load_names(folder: Path) -> list[str]:
    """Class names from ``batches.meta`` (``label_names``)."""
    path = Path(folder) / CIFAR10_FILES["meta"][0]
    meta = load_pickle(path)
    try:
        names = list(_field(meta, "label_names"))
    except (KeyError, TypeError):
        raise DataError(f"'{path}' has no label_names list; expected the batches.meta of CIFAR-10") from None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_split(folder: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 RGB and labels (N,) int64 of ``split`` (train, or val/test = test_batch)."""
    files = CIFAR10_FILES["train" if split == "train" else "val"]
    images, labels = [], []
    for name in files:
        path = Path(folder) / name
        batch = load_pickle(path)
        try:
            data, lab = np.asarray(_field(batch, "data")), np.asarray(_field(batch, "labels"))
        except (KeyError, TypeError):
            raise DataError(f"'{path}' lacks 'data' or 'labels'; expected a CIFAR-10 batch dict") from None
        size = int(np.prod(IMAGE_SHAPE))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
            raise DataError(
                f"'{path}': data is {data.dtype} {data.shape}; expected uint8 (N, {size}) rows of 3×32×32 pixels"
            )
        if lab.shape != (len(data),):
            raise DataError(f"'{path}': {len(data)} images but labels of shape {lab.shape}")
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataError(
                f"'{path}': labels span {lab.min()}..{lab.max()}, outside the {num_classes} classes of batches.meta"
            )
        images.append(data.reshape(-1, *IMAGE_SHAPE).transpose(0, 2, 3, 1))
        labels.append(lab.astype(np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)

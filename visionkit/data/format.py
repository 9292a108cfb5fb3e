"""The one place that reads the on-disk dataset format (docs/dataset-format.md): data.yaml and file layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_data_yaml(path: str | Path) -> dict[str, Any]:
    """Read a data.yaml; ``path`` in it is made absolute (relative to the YAML's folder) as ``root``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file '{path}' does not exist; pass data= a data.yaml, a dataset folder or a name")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"'{path}' is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"'{path}' must hold a mapping (path, train, val, names, ...)")
    base = Path(data.get("path") or ".")
    data["root"] = base if base.is_absolute() else (path.parent / base).resolve()
    data["yaml_file"] = str(path)
    if "names" in data:
        data["names"] = names_list(data["names"], path)
    return data


def names_list(names: Any, source: Path | str) -> list[str]:
    """``names`` as a list: accepts a list or a {id: name} mapping with ids 0..N-1."""
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise DataError(f"'{source}': names ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        return [str(names[k] if k in names else names[str(k)]) for k in ids]
    raise DataError(f"'{source}': names must be a list or a mapping of id: name, got {type(names).__name__}")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def class_folders(split_dir: Path) -> list[Path]:
    """Class sub-folders of a classification split (``root/train/<class>/``), sorted by name."""
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

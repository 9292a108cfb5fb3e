"""The one place that reads the on-disk dataset format (docs/dataset-format.md): data.yaml and file layout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import DataError
from visionkit.yamlfile import read_yaml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


# pictures people have (phones, cameras) in formats OpenCV does not decode: reported, never passed over in silence
UNREADABLE_IMAGE_FORMATS = {
    **dict.fromkeys((".heic", ".heif"), "HEIC/HEIF (iPhone photos)"),
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    **dict.fromkeys((".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"), "camera raw"),
}


def unreadable_images(files) -> list[Path]:
    """The files among ``files`` that are pictures in a format visionkit cannot read (HEIC, AVIF, camera raw)."""
    return [Path(f) for f in files if Path(f).suffix.lower() in UNREADABLE_IMAGE_FORMATS]


def unreadable_message(files: list[Path], where: str, labelled: bool = True) -> str:
    """What to tell about pictures left out because of their format, and how to bring them in (``labelled``:
    they belong to a dataset, whose labels are found by base name)."""
    kinds = sorted({UNREADABLE_IMAGE_FORMATS[f.suffix.lower()] for f in files})
    listed = ", ".join(f.name for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    keep = ", keeping the base name so their labels still match" if labelled else ""
    return (
        f"{where}: {len(files)} picture(s) in a format visionkit cannot read ({', '.join(kinds)}) are left out: "
        f"{listed}. Convert them to JPEG or PNG (e.g. `heif-convert photo.heic photo.jpg`, or pillow-heif){keep}"
    )


EXIF_ORIENTATION = 0x0112


def _ends_with_eoi(source) -> bool:
    """True when a JPEG (path or binary file object) ends with the end-of-image marker FFD9 (trailing zero padding
    allowed). A file cut short lacks it; OpenCV then decodes the missing part as grey without an error. Some
    cameras append data after the marker, so a False only means "decode it all to be sure"."""
    if hasattr(source, "seek"):
        source.seek(0, 2)
        size = source.tell()
        source.seek(max(0, size - 64))
        tail = source.read()
    else:
        with open(source, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64))
            tail = f.read()
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


def image_size(source) -> tuple[int, int]:
    """(width, height) of an image file (path or binary file object) as it is displayed: EXIF orientations 5-8
    (quarter turns) swap the stored sides. cv2.imread, browsers and so Label Studio all apply the orientation,
    so labels and masks refer to the displayed image. Verifies the file first (a JPEG cut short is refused too);
    raises what PIL raises."""
    from PIL import Image

    with Image.open(source) as im:
        im.verify()
        truncated = im.format == "JPEG" and not _ends_with_eoi(source)
    if hasattr(source, "seek"):
        source.seek(0)
    with Image.open(source) as im:
        if truncated:  # no end-of-image marker: decode it all (PIL refuses a truncated file; OpenCV would not)
            im.load()
            if hasattr(source, "seek"):
                source.seek(0)
        w, h = im.size
        try:
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
        except Exception:  # unreadable EXIF: the stored orientation
            orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def load_data_yaml(path: str | Path) -> dict[str, Any]:
    """Read a data.yaml; ``path`` in it is made absolute (relative to the YAML's folder) as ``root``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file '{path}' does not exist; pass data= a data.yaml, a dataset folder or a name")
    data = read_yaml(path, "dataset file", DataError) or {}
    if not isinstance(data, dict):
        raise DataError(f"'{path}' must hold a mapping (path, train, val, names, ...)")
    for key in ("path", "train", "val", "test", "classify"):  # folders: text, or (train/val/test) a list of texts
        value = data.get(key)
        single = key in ("path", "classify")
        texts = value if isinstance(value, list) and not single else [value]
        if value is not None and not all(isinstance(v, str) and v and _path_text(v) for v in texts):
            alt = "" if single else " or a list of them"
            raise DataError(f"'{path}': {key} must be a folder path (text){alt}, got {short_prefix(str(value))}")
    base = Path(data.get("path") or ".")
    data["root"] = base if base.is_absolute() else (path.parent / base).resolve()
    data["yaml_file"] = str(path)
    if data.get("path") is None:
        _roboflow_splits(data)
    _check_nc(data, path)
    for key in ("names", "classify_names"):
        if key in data and data[key] is not None:
            data[key] = names_list(data[key], path)
    scale = data.get("depth_scale")
    if scale is not None and not (
        isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0
    ):  # read at every depth PNG: a text or a zero would fail (or divide by zero) deep inside training
        raise DataError(
            f"'{path}': depth_scale must be a positive number (PNG values per metre, e.g. 1000), got "
            f"{short_prefix(str(scale))}"
        )
    return data


SPLIT_KEYS = ("train", "val", "test")


def _roboflow_splits(data: dict[str, Any]) -> None:
    """Roboflow's YOLO exports (the usual source of ready-made datasets) put data.yaml in the dataset folder, beside
    train/, valid/ and test/, yet write ``train: ../train/images``: paths for a YAML one folder down. Without
    ``path:``, a split that starts with ``../`` and is missing there, but exists without the ``../``, is read
    from the YAML's own folder, as YOLOv5/v8 read it."""
    root = data["root"]
    for key in SPLIT_KEYS:
        value = data.get(key)
        entries = value if isinstance(value, list) else [value]
        fixed = []
        for entry in entries:
            if isinstance(entry, str) and entry.startswith(("../", "..\\")) and not (root / entry).exists():
                inside = entry[3:]
                entry = inside if (root / inside).exists() else entry
            fixed.append(entry)
        if value is not None:
            data[key] = fixed if isinstance(value, list) else fixed[0]


def _check_nc(data: dict[str, Any], path: Path) -> None:
    """``nc`` (YOLO's class count) must agree with ``names`` when both are given: a mismatch means one was edited
    without the other, and labels would be read against the wrong list."""
    nc, names = data.get("nc"), data.get("names")
    if nc is None:
        return
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise DataError(f"'{path}': nc must be the number of classes (a positive integer), got {short_prefix(str(nc))}")
    if names is not None and len(names) != nc:
        raise DataError(
            f"'{path}': nc: {nc} but names lists {len(names)} class(es); make nc the length of names (or drop nc)"
        )


def _path_text(text: str) -> bool:
    """Text a file system path can be made of: no NUL byte, no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def names_list(names: Any, source: Path | str) -> list[str]:
    """``names`` as a list: accepts a list or a {id: name} mapping with ids 0..N-1."""
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(
                f"'{source}': names ids must be integers 0..N-1, got {short_prefix(str(list(names)))}"
            ) from None
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


# --- labels: YOLO rows -----------------------------------------------------------------------------------------------
LABEL_DIRS = {"labels": ".txt", "masks": ".png", "depth": ".png", "instances": ".json"}


def sidecar_path(image: str | Path, kind: str = "labels") -> Path:
    """The label/mask/depth file of an image: the last ``/images/`` becomes ``/{kind}/``, suffix .txt or .png
    (depth may also be .npy: see :func:`depth_path`)."""
    parts = list(Path(image).parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = kind
            return Path(*parts).with_suffix(LABEL_DIRS[kind])
    raise DataError(
        f"'{image}' is not under an images/ folder, so its {kind} file cannot be found; "
        f"lay the dataset out as images/<split>/ and {kind}/<split>/"
    )


def depth_path(image: str | Path) -> Path | None:
    """The depth file of an image: uint16 PNG or float32 .npy, whichever exists."""
    png = sidecar_path(image, "depth")
    for p in (png, png.with_suffix(".npy")):
        if p.is_file():
            return p
    return None


def format_row(cls: int, coords) -> str:
    """One YOLO row: ``cls cx cy w h`` or ``cls x1 y1 x2 y2 ...`` (normalised, 6 decimals: stable bytes)."""
    return " ".join([str(int(cls))] + [f"{float(v):.6f}" for v in coords])


def write_label_file(path: Path, rows: list[tuple[int, list[float]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(format_row(c, xy) + "\n" for c, xy in rows))


def read_label_file(path: Path, num_classes: int | None = None) -> list[tuple[int, list[float]]]:
    """Parse YOLO rows; every problem names the file and line. A missing file means no objects."""
    if not path.is_file():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not a text file (invalid UTF-8 at byte {e.start}); a YOLO label file holds rows 'cls cx cy w h'"
        ) from None
    except OSError as e:  # a folder where a label file belongs, unreadable
        raise DataError(f"{path}: cannot read the label file ({e.strerror})") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            coords = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(
                f"{path}:{n}: not a YOLO row (starts {short_prefix(line)}); expected numbers "
                f"'cls cx cy w h' or 'cls x1 y1 x2 y2 ...'"
            ) from None
        if not all(math.isfinite(v) for v in coords):
            raise DataError(
                f"{path}:{n}: a coordinate is not a finite number (starts {short_prefix(line)}); fix the row"
            )
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            raise DataError(
                f"{path}:{n}: expected 'cls cx cy w h' or 'cls x1 y1 x2 y2 x3 y3 ...', got {len(coords)} numbers"
            )
        if cls < 0 or (num_classes is not None and cls >= num_classes):
            raise DataError(
                f"{path}:{n}: class id {cls} is outside 0..{(num_classes or 1) - 1} (the names in "
                f"data.yaml); fix the row or add the class to names"
            )
        rows.append((cls, coords))
    return rows


def short_prefix(text: str, limit: int = 24) -> str:
    """The first characters of a line, escaped: enough to find it, never a whole line of a file that may not be
    a label file at all (a symlink to a system file)."""
    return repr(text.strip()[:limit]) + ("..." if len(text.strip()) > limit else "")


def row_to_box(coords: list[float]) -> tuple[float, float, float, float]:
    """(cx, cy, w, h) normalised, from a box row or a polygon row's extent."""
    if len(coords) == 4:
        return tuple(coords)
    xs, ys = coords[0::2], coords[1::2]
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def clipped_box(coords: list[float], size: tuple[int, int]) -> tuple[list[float] | None, bool]:
    """A row's box (cx, cy, w, h), normalised, clipped to the image of ``size`` (w, h), and whether clipping changed
    it; the box is None when less than a pixel of it is left (training drops it; check counts no object for it)."""
    cx, cy, w, h = row_to_box(coords)
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
    changed = (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)
    if (cx2 - cx1) * size[0] < 1 or (cy2 - cy1) * size[1] < 1:
        return None, changed  # zero-sized or wholly outside the image
    return [(cx1 + cx2) / 2, (cy1 + cy2) / 2, cx2 - cx1, cy2 - cy1], changed


# --- masks and depth -------------------------------------------------------------------------------------------------
IGNORE_INDEX = 255


BACKGROUND_NAMES = ("background", "bg", "_background_", "__background__")


def mask_names(spec: dict[str, Any]) -> list[str]:
    """What the values of a dataset's masks mean (the one rule every reader and writer follows): data.yaml's
    ``mask_names`` when given; else ``[background, *names]``, so 0 = background and 1 + class id = that class (what
    importers write, what polygon rows rasterise to); unless ``names`` already starts with a background class
    (``background``, ``bg``, ``_background_``), then ``names`` themselves (value = class id, the layout of
    mask-only semantic datasets)."""
    if spec.get("mask_names"):
        return names_list(spec["mask_names"], spec.get("yaml_file", "data.yaml"))
    names = list(spec.get("names") or [])
    if names and str(names[0]).lower() in BACKGROUND_NAMES:
        return names
    return ["background", *names]


def fill_polygon(mask, pixels, value: int) -> None:
    """Paint ``value`` inside a polygon given in pixel coordinates. Coordinates are continuous (pixel i spans
    [i, i+1)) while cv2 puts integer coordinates at pixel centres, hence the half-pixel shift; 8 fractional bits
    keep it exact."""
    import cv2
    import numpy as np

    pts = np.round((np.asarray(pixels, np.float64) - 0.5) * 256).astype(np.int32)
    cv2.fillPoly(mask, [pts], int(value), lineType=cv2.LINE_8, shift=8)


def write_mask(path: Path, mask) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask.astype("uint8")):
        raise DataError(f"could not write mask '{path}'")


def write_image(path: Path, image) -> Path:
    """Encode by the suffix and write; unlike ``cv2.imwrite`` (which returns False) a failed write raises the
    OSError (a full disk: ENOSPC), and leaves no half-written file."""
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise DataError(f"could not encode the picture for '{path}'")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as e:
        path.unlink(missing_ok=True)
        e.filename = e.filename or str(path)
        raise
    return path


MASK_MODES = ("L", "P")  # 8-bit grey, or a palette PNG whose indices are the class ids (Pascal VOC's layout)


def mask_header(path: Path) -> tuple[int, int]:
    """(width, height) of a mask file, read from its header only; an unusable mask is a DataError that says why."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
    except Exception as e:
        raise DataError(f"cannot decode mask '{path}': {type(e).__name__}: {e}") from e
    if mode not in MASK_MODES:
        kind = {
            "RGB": "an RGB image",
            "RGBA": "an RGBA image",
            "I;16": "a 16-bit image",
            "I": "a 32-bit image",
            "1": "a 1-bit image",
        }.get(mode, f"mode {mode}")
        raise DataError(
            f"mask '{path}' is {kind}; a mask must be a single-channel 8-bit PNG of class ids (grey or "
            f"palette), 255 = ignore"
        )
    return size


def read_mask(path: Path):
    """A mask as an H×W uint8 array of class ids (grey or palette PNG; a palette's indices are the ids)."""
    import cv2
    import numpy as np
    from PIL import Image

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # the common grey PNG, decoded fast
    if mask is not None and mask.ndim == 2 and mask.dtype == np.uint8:
        return mask
    mask_header(path)  # palette (cv2 expands it to colours), or an error saying what is wrong
    with Image.open(path) as im:
        return np.array(im, dtype=np.uint8)


def read_depth(path: Path, depth_scale: float | None = None, counts: dict | None = None):
    """Depth in metres (float32 H×W); 0 = invalid. PNG: uint16 value / ``depth_scale`` (data.yaml's key, required
    for PNGs); .npy: float32 metres as stored. Negative and non-finite values become 0 (invalid); ``counts``, when
    given, gets how many pixels that was under ``"invalid values"``."""
    import cv2
    import numpy as np

    if path.suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"depth '{path}' is not a readable .npy array: {type(e).__name__}: {e}") from e
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise DataError(f"depth '{path}' must be a 2-D numeric array (metres), got {depth.dtype} {depth.shape}")
        depth = depth.astype(np.float32)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DataError(f"cannot decode depth '{path}'")
        if raw.ndim != 2 or raw.dtype != np.uint16:
            kind = "an RGB image" if raw.ndim == 3 else f"{raw.dtype.itemsize * 8}-bit"
            raise DataError(
                f"depth '{path}' is {kind}; depth PNGs must be single-channel 16-bit (value / "
                f"depth_scale = metres), or store float32 metres in a .npy file"
            )
        if depth_scale is None:
            raise DataError(
                f"depth '{path}' is a 16-bit PNG but data.yaml has no 'depth_scale' (PNG values per "
                f"metre, e.g. depth_scale: 1000 for millimetres); add it"
            )
        depth = raw.astype(np.float32) / float(depth_scale)
    bad = ~np.isfinite(depth) | (depth < 0)
    if counts is not None:
        counts["invalid values"] = counts.get("invalid values", 0) + int(bad.sum())
    depth[bad] = 0
    return depth


# --- data.yaml and splits ---------------------------------------------------------------------------------------------
def write_data_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write data.yaml with names as {id: name} (the Ultralytics form), keys in a stable order."""
    out = dict(data)
    for key in ("names", "mask_names"):
        if isinstance(out.get(key), list):
            out[key] = {i: n for i, n in enumerate(out[key])}
    path.write_text(yaml.safe_dump(out, sort_keys=False, allow_unicode=True))


def split_paths(spec: dict[str, Any], split: str) -> list[Path]:
    """The folders and .txt lists ``spec[split]`` names (one or a list), relative ones under the dataset root."""
    entry = spec.get(split)
    entries = [] if entry is None else entry if isinstance(entry, list) else [entry]
    return [Path(e) if Path(e).is_absolute() else spec["root"] / e for e in entries]


def split_unreadable(spec: dict[str, Any], split: str) -> list[Path]:
    """Pictures in the folders of a split that visionkit cannot read (see ``unreadable_images``)."""
    folders = [p for p in split_paths(spec, split) if p.is_dir()]
    return [f for p in folders for f in unreadable_images(sorted(f for f in p.rglob("*") if f.is_file()))]


def split_images(spec: dict[str, Any], split: str) -> list[Path]:
    """Image files of a split: ``spec[split]`` is a folder, a .txt list of images, or a list of those."""
    if spec.get(split) is None:
        raise DataError(f"'{spec.get('yaml_file', 'data.yaml')}' has no '{split}' split; add '{split}: images/{split}'")
    files: list[Path] = []
    for p in split_paths(spec, split):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_image(f))
        elif p.suffix == ".txt" and p.is_file():
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as e:
                raise DataError(
                    f"split '{split}' lists its images in '{p}', which is not readable UTF-8 text ({e}); write one "
                    f"image path per line"
                ) from None
            for line in text.splitlines():
                if line.strip():
                    f = Path(line.strip())
                    files.append(f if f.is_absolute() else (p.parent / f).resolve())
        else:
            raise DataError(f"split '{split}' points to '{p}', which is neither a folder nor a .txt list of images")
    return files

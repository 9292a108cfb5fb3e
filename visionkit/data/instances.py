"""Objects with exact masks: the ``instances/`` sidecar of the dataset format (docs/dataset-format.md).

A polygon row cannot hold a hole or a second piece; a Label Studio brush region or a COCO RLE can. Such an object
keeps its row in ``labels/xxx.txt`` (the box of its whole mask, so detection and every YOLO tool still read it) and
its exact pixels in ``instances/xxx.json`` under the row's line number, as a COCO compressed RLE::

    {"version": 1, "height": 480, "width": 640,
     "objects": {"3": "<counts>"},                 # line 3 of labels/xxx.txt is exactly these pixels
     "crowd": [{"class": 0, "counts": "<counts>"}]} # ignore regions (COCO iscrowd=1): never trained, not scored

RLE keeps overlapping objects apart (an id map could not) and is what pycocotools scores, so an import, a
``data export coco`` and a validation see the same pixels. Rows without an entry are polygons (rasterised at the
image's size) or boxes (no mask: the instance task counts and skips them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visionkit.data.format import fill_polygon, read_label_file, sidecar_path
from visionkit.errors import DataError

VERSION = 1


def instances_path(image: str | Path) -> Path:
    """The ``instances/…/xxx.json`` of an image (it may not exist)."""
    return sidecar_path(image, "instances")


def encode_mask(mask: np.ndarray) -> str:
    """A 2-D boolean mask → COCO compressed RLE counts (column-major, as pycocotools stores them)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def rle(counts: str | bytes, height: int, width: int) -> dict:
    """A pycocotools RLE dict from compressed counts."""
    return {"size": [int(height), int(width)], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(counts: str | bytes, height: int, width: int) -> np.ndarray:
    """Compressed RLE counts → a (height, width) bool mask."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(rle(counts, height, width)).astype(bool)


def polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A polygon in pixel coordinates → a bool mask (the continuous-coordinate rule of :func:`fill_polygon`)."""
    m = np.zeros((height, width), np.uint8)
    fill_polygon(m, points, 1)
    return m.astype(bool)


def mask_box_row(mask: np.ndarray) -> list[float]:
    """The normalised ``cx cy w h`` of a mask's extent (the row an exact-mask object is written with)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise ValueError("an empty mask has no box")
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


@dataclass
class InstanceFile:
    """A parsed ``instances/xxx.json``: exact masks by 1-based label line, and crowd (ignore) regions."""

    height: int
    width: int
    objects: dict[int, str] = field(default_factory=dict)
    crowd: list[tuple[int, str]] = field(default_factory=list)


def write_instances(path: Path, height: int, width: int, objects: dict[int, np.ndarray], crowd=()) -> None:
    """Write the sidecar atomically (a temporary file, then a rename): ``objects`` maps 1-based label lines to
    bool masks, ``crowd`` holds (class, bool mask) ignore regions. Nothing is written when both are empty."""
    if not objects and not crowd:
        return
    doc = {
        "version": VERSION,
        "height": int(height),
        "width": int(width),
        "objects": {str(int(k)): encode_mask(m) for k, m in sorted(objects.items())},
        "crowd": [{"class": int(c), "counts": encode_mask(m)} for c, m in crowd],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_instances(path: Path, num_classes: int | None = None) -> InstanceFile:
    """Parse and check an ``instances/xxx.json``; every problem names the file and the key."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"instance file '{path}' cannot be read as JSON: {e}") from e

    def bad(what: str) -> DataError:
        return DataError(f"instance file '{path}': {what} (format: docs/dataset-format.md, 'instances/')")

    if not isinstance(doc, dict):
        raise bad("expected a JSON object")
    if doc.get("version", VERSION) != VERSION:
        raise bad(f"version {doc.get('version')!r} is not {VERSION}; update visionkit")
    h, w = doc.get("height"), doc.get("width")
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise bad(f"'height' and 'width' must be positive integers, got {h!r}, {w!r}")
    objects = doc.get("objects", {})
    if not isinstance(objects, dict):
        raise bad("'objects' must map label line numbers to RLE counts")
    out = InstanceFile(h, w)
    for key, counts in objects.items():
        if not (str(key).isdigit() and int(key) >= 1) or not isinstance(counts, str):
            raise bad(f"objects key {key!r} must be a label line number (1, 2, ...) holding an RLE counts string")
        out.objects[int(key)] = counts
    crowd = doc.get("crowd", [])
    if not isinstance(crowd, list):
        raise bad("'crowd' must be a list")
    for i, region in enumerate(crowd):
        cls = region.get("class") if isinstance(region, dict) else None
        if not isinstance(cls, int) or isinstance(cls, bool) or cls < 0 or not isinstance(region.get("counts"), str):
            raise bad(f"crowd[{i}] must be {{'class': id, 'counts': RLE}}")
        if num_classes is not None and cls >= num_classes:
            raise bad(f"crowd[{i}] has class {cls}, but the dataset has {num_classes} names")
        out.crowd.append((cls, region["counts"]))
    return out


@dataclass
class ImageObjects:
    """One image's objects at its original size: class ids, COCO RLE dicts (exact masks or rasterised polygons),
    crowd regions (class, RLE), and the rows that have no mask (boxes), which the instance task cannot train."""

    classes: np.ndarray
    rles: list[dict]
    crowd: list[tuple[int, dict]]
    boxes_only: int = 0
    empty: int = 0  # rows whose mask has no pixel inside the image


def image_objects(image: str | Path, size: tuple[int, int], num_classes: int) -> ImageObjects:
    """The objects of ``image`` (``size`` = (width, height) as displayed): each label row with its mask, from the
    instance file when it has the row's line, else from its polygon; box rows are counted, not returned."""
    from pycocotools import mask as mask_utils

    w, h = size
    label = sidecar_path(image)
    rows = read_label_file(label, num_classes) if label.is_file() else []
    sidecar = instances_path(image)
    exact = read_instances(sidecar, num_classes) if sidecar.is_file() else InstanceFile(h, w)
    if (exact.height, exact.width) != (h, w):
        raise DataError(
            f"instance file '{sidecar}' is {exact.width}x{exact.height}, but its image '{image}' is {w}x{h}; "
            f"re-import the dataset"
        )
    # pycocotools reads runs without bounds checks: a damaged file must fail here, naming itself
    entries = [(f"objects['{k}']", c) for k, c in exact.objects.items()]
    entries += [(f"crowd[{i}]", c) for i, (_, c) in enumerate(exact.crowd)]
    for where, counts in entries:
        problem = counts_problem(counts, h, w)
        if problem:
            raise DataError(f"instance file '{sidecar}': {where}: {problem} (re-import, or fix the file)")
    extra = sorted(k for k in exact.objects if k > len(rows))
    if extra:
        raise DataError(
            f"instance file '{sidecar}' has masks for line(s) {extra} but '{label}' has {len(rows)} row(s); the "
            f"label file and its instance file disagree (re-import, or delete the instance file)"
        )
    classes, rles = [], []
    boxes_only = empty = 0
    for line, (cls, coords) in enumerate(rows, start=1):
        if line in exact.objects:
            r = rle(exact.objects[line], h, w)
        elif len(coords) >= 6:
            r = mask_utils.encode(np.asfortranarray(polygon_mask(np.reshape(coords, (-1, 2)) * [w, h], h, w), np.uint8))
        else:
            boxes_only += 1
            continue
        if mask_utils.area(r) == 0:
            empty += 1
            continue
        classes.append(cls)
        rles.append(r)
    crowd = [(c, rle(counts, h, w)) for c, counts in exact.crowd]
    return ImageObjects(np.asarray(classes, np.int64), rles, crowd, boxes_only, empty)


# --- checking RLE before pycocotools reads it ------------------------------------------------------------------------
def parse_counts(counts: str) -> list[int] | str:
    """The run lengths a COCO compressed RLE string holds, or why it is not one.

    pycocotools decodes without bounds checks (runs that add up to more than height × width write past its buffer),
    so RLE from a file is parsed here first. The format: each run is a little-endian sequence of 6-bit groups in
    characters 48..111 (bit 5 = another group follows, the last group's bit 4 = negative); from the fourth run on a
    value is the difference to the run two before."""
    if not isinstance(counts, str):
        return f"RLE counts must be a string, got {type(counts).__name__}"
    runs: list[int] = []
    value = shift = 0
    more = False
    for i, ch in enumerate(counts):
        c = ord(ch) - 48
        if not 0 <= c < 64:
            return f"RLE counts has the character {ch!r} at {i}; compressed counts use only '0'..'o'"
        value |= (c & 0x1F) << shift
        shift += 5
        more = bool(c & 0x20)
        if more:
            if shift > 60:
                return "RLE counts holds a run longer than any image"
            continue
        if c & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return f"RLE counts has a negative run ({value}) at run {len(runs)}"
        runs.append(value)
        value = shift = 0
    if more:
        return "RLE counts ends in the middle of a run (truncated)"
    return runs


def counts_problem(counts, height: int, width: int) -> str | None:
    """Why ``counts`` (compressed string, or COCO's uncompressed list of ints) is not an RLE of exactly
    ``height`` × ``width`` pixels, or None. Checked before pycocotools decodes it."""
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            return "uncompressed RLE counts must be non-negative integers"
        runs = counts
    else:
        runs = parse_counts(counts)
        if isinstance(runs, str):
            return runs
    total = sum(runs)
    if total != height * width:
        return f"RLE runs cover {total} pixels, but {height}×{width} = {height * width}"
    return None


def rle_bbox(counts: str, height: int, width: int) -> list[float]:
    """COCO ``[x, y, w, h]`` (pixels) of compressed counts; [0, 0, 0, 0] for an empty mask."""
    from pycocotools import mask as mask_utils

    return [float(v) for v in mask_utils.toBbox(rle(counts, height, width))]


def rle_area(counts: str, height: int, width: int) -> int:
    """Pixels in compressed counts."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(rle(counts, height, width)))

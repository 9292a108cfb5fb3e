"""COCO instances JSON ⇄ the visionkit dataset format, through pycocotools (polygons and RLE masks)."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from visionkit.data.format import (
    fill_polygon,
    image_size,
    load_data_yaml,
    read_label_file,
    row_to_box,
    sidecar_path,
    split_images,
    write_data_yaml,
    write_label_file,
    write_mask,
)
from visionkit.data.instances import (
    InstanceFile,
    counts_problem,
    instances_path,
    mask_box_row,
    polygon_mask,
    read_instances,
    rle,
    rle_area,
    rle_bbox,
    write_instances,
)
from visionkit.data.labelstudio.images import check_relative, inside
from visionkit.data.output import atomic_dir, atomic_write_text, prepare_output, safe_component
from visionkit.errors import DataError, UsageError

SPLIT_WORDS = ("train", "val", "test")


def _load(path: Path):
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DataError(f"COCO file '{path}' does not exist")
    try:
        with open(os.devnull, "w") as devnull, _redirect(devnull):
            return COCO(str(path))
    except Exception as e:
        raise DataError(f"'{path}' is not a COCO instances file: {type(e).__name__}: {e}") from e


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_numbers(values) -> bool:
    return isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _check_structure(coco, path: Path) -> None:
    """Images and categories must be what COCO says they are (a DataError naming the entry otherwise); an
    annotation's own problems are reported per annotation when it is imported."""
    for i, img in enumerate(coco.dataset.get("images") or []):
        ok = (
            isinstance(img, dict)
            and _is_int(img.get("id"))
            and isinstance(img.get("file_name"), str)
            and img["file_name"]
            and all(_is_int(img.get(k)) and 0 < img[k] <= 1 << 16 for k in ("width", "height"))
        )
        if not ok:
            raise DataError(
                f"'{path}': images[{i}] needs an integer id, a file_name and positive integer width and "
                f"height; got {str(img)[:120]}"
            )
    for i, cat in enumerate(coco.dataset.get("categories") or []):
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise DataError(f"'{path}': categories[{i}] needs an integer id and a name; got {str(cat)[:120]}")
    for i, ann in enumerate(coco.dataset.get("annotations") or []):
        if not (isinstance(ann, dict) and _is_int(ann.get("image_id"))):
            raise DataError(f"'{path}': annotations[{i}] needs an integer image_id; got {str(ann)[:120]}")


def _annotation_problem(ann: dict, cat_index: dict, w: int, h: int) -> str | None:
    """Why an annotation cannot be imported, or None. An RLE's runs are checked here, before pycocotools decodes
    them."""
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in cat_index:
        return f"unknown category {str(ann.get('category_id'))[:40]}"
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        if not all(_finite_numbers(p) and len(p) % 2 == 0 for p in seg):
            return "malformed polygon (segmentation must be lists of finite x, y numbers)"
        return None
    if isinstance(seg, dict):
        if seg.get("counts") is None or list(seg.get("size") or []) != [h, w]:
            return f"malformed RLE segmentation (needs counts and size [{h}, {w}])"
        problem = counts_problem(seg["counts"], h, w)
        return f"malformed RLE segmentation ({problem})" if problem else None
    bbox = ann.get("bbox")
    if not (_finite_numbers(bbox) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
        return "malformed bbox (expected 4 finite numbers x, y, width, height with width, height >= 0)"
    return None


def _segmentation_mask(seg, w: int, h: int, size: tuple[int, int]) -> np.ndarray:
    """A checked polygon list or RLE → a bool mask drawn at the JSON's ``w`` × ``h`` and resized nearest-neighbour
    to the file's ``size`` (width, height), as the semantic mask is."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        counts = seg["counts"]
        r = mask_utils.frPyObjects(seg, h, w) if isinstance(counts, list) else rle(counts, h, w)
        mask = mask_utils.decode(r).astype(bool)
    else:
        mask = np.zeros((h, w), bool)
        for p in seg:
            if len(p) >= 6:
                mask |= polygon_mask(np.asarray(p, np.float64).reshape(-1, 2), h, w)
    if size != (w, h):
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


class _redirect:
    """pycocotools prints to stdout while loading; keep the CLI's output ours."""

    def __init__(self, target):
        self.target = target

    def __enter__(self):
        import contextlib

        self._cm = contextlib.redirect_stdout(self.target)
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def coco_sources(src: str | Path | list) -> list[Path]:
    """The COCO files ``src`` names: a file, a list of files, or a folder holding them directly or one level down
    (Roboflow's COCO export: train/, valid/ and test/, each with ``_annotations.coco.json`` beside its images)."""
    if isinstance(src, (list, tuple)):
        return [Path(s) for s in src]
    path = Path(src)
    if not path.is_dir():
        return [path]
    found = sorted(path.glob("*.json")) + sorted(path.glob("*/*.json"))
    if not found:
        raise DataError(f"src folder '{path}' holds no .json file (nor do its sub-folders); pass the COCO file(s)")
    return found


def parent_categories(cocos: list) -> dict[int, str]:
    """Categories that label nothing and are the supercategory of another one: Roboflow's COCO exports list the
    project itself as category 0 (the others have it as their supercategory). As a class it would have no
    examples; {id: name} of those, left out of ``names``."""
    used = {a.get("category_id") for _, coco in cocos for a in coco.dataset.get("annotations") or []}
    cats = [c for _, coco in cocos for c in coco.dataset.get("categories") or []]
    supers = {c.get("supercategory") for c in cats if isinstance(c.get("supercategory"), str)}
    return {
        c["id"]: c["name"]
        for c in cats
        if c["id"] not in used
        and c["name"] in supers
        and any(d.get("supercategory") == c["name"] and d["id"] != c["id"] for d in cats)
    }


def import_coco(
    src: str | Path | list,
    images: str | Path | None,
    out: str | Path,
    *,
    val: float = 0.2,
    seed: int = 0,
    exist_ok: bool = False,
    verbose: bool = True,
) -> dict:
    """COCO instances file(s) → dataset. Several files are placed by the split word in their names
    (instances_train.json → train) or, failing that, in their folder's (valid/_annotations.coco.json → val); one
    file is split by image with ``val``. ``images``: the folder holding the images; None: each file's own folder.
    Returns the report."""
    files = coco_sources(src)
    out = Path(out)
    folders = {f: Path(images) if images is not None else f.parent for f in files}
    for folder in dict.fromkeys(folders.values()):
        if not folder.is_dir():
            raise DataError(f"images folder '{folder}' does not exist")
    inputs = {f"src[{i}]" if len(files) > 1 else "src": f for i, f in enumerate(files)}
    prepare_output(out, exist_ok, {**({"images": Path(images)} if images is not None else {}), **inputs})
    cocos = [(f, _load(f)) for f in files]
    for f, coco in cocos:
        _check_structure(coco, f)
    parents = parent_categories(cocos)
    cats = sorted(
        {
            c["id"]: c["name"] for _, coco in cocos for c in coco.loadCats(coco.getCatIds()) if c["id"] not in parents
        }.items()
    )
    names = [n for _, n in cats]
    cat_index = {cid: i for i, (cid, _) in enumerate(cats)}
    report: dict[str, Any] = {
        "source": [str(f) for f in files],
        "names": names,
        "categories_left_out": [
            {"id": cid, "name": name, "reason": "labels nothing and is the supercategory of other categories"}
            for cid, name in sorted(parents.items())
        ],
        "images_written": 0,
        "annotations": Counter(),
        "skipped": [],
        "splits": Counter(),
        "resized": [],
        "renamed": [],
    }
    stems: set[tuple[str, str]] = set()  # (split, stem) written: one label and mask file per stem
    with atomic_dir(out, exist_ok, written_by="visionkit data import coco") as tmp:
        has_masks = any("segmentation" in a and a["segmentation"] for _, c in cocos for a in c.dataset["annotations"])
        for f, coco in cocos:
            ids = sorted(coco.getImgIds())
            splits = _assign_splits(f, ids, len(files), val, seed)
            for img_id in ids:
                info = coco.loadImgs(img_id)[0]
                _import_image(coco, info, splits[img_id], folders[f], tmp, cat_index, has_masks, report, stems)
        data: dict[str, Any] = {"path": "."}
        for split in SPLIT_WORDS:
            if report["splits"].get(split):
                data[split] = f"images/{split}"
        data["names"] = names
        if has_masks:
            data["mask_names"] = ["background", *names]
            data["ignore_index"] = 255
        data["source"] = {"coco": [str(f) for f in files]}
        write_data_yaml(tmp / "data.yaml", data)
        report["annotations"] = dict(report["annotations"])
        report["splits"] = dict(report["splits"])
        (tmp / "import_report.json").write_text(json.dumps(report, indent=1) + "\n")
    if verbose:
        print(
            f"imported {report['images_written']} image(s) into {out} (splits: {report['splits']}); "
            f"{sum(report['annotations'].values())} annotation(s) written, {len(report['skipped'])} skipped"
        )
        exact = report["annotations"].get("rle", 0) + report["annotations"].get("polygons (several parts)", 0)
        if exact or report["annotations"].get("crowd"):
            print(
                f"  {exact} object(s) with an exact mask and {report['annotations'].get('crowd', 0)} crowd (ignore) "
                f"region(s) written to instances/"
            )
        for left in report["categories_left_out"]:
            print(f"  category {left['id']} '{left['name']}' left out of names: it {left['reason']}")
        for reason, n in Counter(s["reason"] for s in report["skipped"]).items():
            print(f"  skipped {n}: {reason}")
        if report["renamed"]:
            r = report["renamed"][0]
            print(
                f"  {len(report['renamed'])} image(s) renamed because their base names collide (one label file per "
                f"stem), e.g. {r['image']} → {r['written_as']}"
            )
        if report["resized"]:
            r = report["resized"][0]
            print(
                f"  {len(report['resized'])} image(s) differ in size from the JSON by a uniform scale (e.g. "
                f"{r['image']}: JSON {r['json']}, file {r['file']}); their regions were scaled to the file"
            )
    return report


def _assign_splits(path: Path, ids: list[int], n_files: int, val: float, seed: int) -> dict[int, str]:
    if n_files > 1:
        word = next((w for w in SPLIT_WORDS if w in path.stem.lower()), None)
        word = word or next((w for w in SPLIT_WORDS if w in path.parent.name.lower()), None)
        if word is None:
            raise UsageError(
                f"with several COCO files each one's name or folder must contain train, val or test: '{path}'"
            )
        return {i: word for i in ids}
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = round(val * len(ids))
    return {ids[j]: ("val" if rank < n_val else "train") for rank, j in enumerate(order)}


def _import_image(
    coco,
    info: dict,
    split: str,
    images: Path,
    root: Path,
    cat_index: dict,
    has_masks: bool,
    report: dict,
    stems: set[tuple[str, str]],
) -> None:

    file_name = info["file_name"]
    check_relative(file_name, f"image {info['id']}")
    src = inside(images, file_name)
    if not src.is_file():
        src = inside(images, Path(file_name).name)
    if not src.is_file():
        anns = coco.getAnnIds(imgIds=info["id"])
        report["skipped"].append({"image": file_name, "reason": f"image file not found under {images}"})
        report["skipped"] += [{"annotation": a, "reason": "its image is missing"} for a in anns]
        return
    w, h = int(info["width"]), int(info["height"])
    anns = coco.getAnnIds(imgIds=info["id"])
    try:
        fw, fh = image_size(src)  # as displayed, like the readers and annotation tools see it
    except Exception as e:
        report["skipped"].append({"image": file_name, "reason": f"image does not decode ({type(e).__name__}: {e})"})
        report["skipped"] += [{"annotation": a, "reason": "its image does not decode"} for a in anns]
        return
    if (fw, fh) != (w, h):
        if abs(fw / fh - w / h) > 0.01 * (w / h):  # not the same picture at another scale (a rotation, another file)
            reason = (
                f"the JSON says {w}×{h} but the file is {fw}×{fh} (as displayed); fix the file or the JSON's "
                f"width/height"
            )
            report["skipped"].append({"image": file_name, "reason": reason})
            report["skipped"] += [{"annotation": a, "reason": "its image's size differs from the JSON"} for a in anns]
            return
        # the same aspect: normalised boxes and polygons still hold; the mask is drawn at the JSON size and resized
        report["resized"].append({"image": file_name, "json": f"{w}×{h}", "file": f"{fw}×{fh}"})
    name = safe_component(Path(file_name).name, f"image file_name (image {info['id']})")
    if (split, Path(name).stem) in stems:  # a.jpg twice, or a.jpg and a.png: they would share one label file
        stem, suffix, n = Path(name).stem, Path(name).suffix, 0
        name = f"{stem}_{info['id']}{suffix}"
        while (split, Path(name).stem) in stems:  # the new name taken too: count up, deterministically
            n += 1
            name = f"{stem}_{info['id']}_{n}{suffix}"
        name = safe_component(name, f"image file_name (image {info['id']})")
        report["renamed"].append({"image": file_name, "id": info["id"], "written_as": name})
    stems.add((split, Path(name).stem))
    dst = root / "images" / split / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    rows: list = []
    exact: dict[int, np.ndarray] = {}  # 1-based row line → the object's exact mask at the file's size
    crowd: list[tuple[int, np.ndarray]] = []
    mask = np.zeros((h, w), np.uint8) if has_masks else None
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=info["id"])):
        seg = ann.get("segmentation")
        if ann.get("iscrowd") and not seg:
            report["skipped"].append({"annotation": ann["id"], "reason": "crowd region (iscrowd=1)"})
            continue
        problem = _annotation_problem(ann, cat_index, w, h)
        if problem:
            report["skipped"].append({"annotation": ann.get("id"), "reason": problem})
            continue
        cls = cat_index[ann["category_id"]]
        if ann.get("iscrowd"):  # an ignore region: no row, so detection reads the same objects as before
            region = _segmentation_mask(seg, w, h, (fw, fh))
            if not region.any():
                report["skipped"].append({"annotation": ann["id"], "reason": "crowd region (iscrowd=1) has no pixel"})
                continue
            crowd.append((cls, region))
            report["annotations"]["crowd"] += 1
            continue
        if isinstance(seg, list) and seg:
            parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg if len(p) >= 6]
            if not parts:
                report["skipped"].append({"annotation": ann["id"], "reason": "polygon with fewer than 3 points"})
                continue
            for p in parts:
                fill_polygon(mask, p, cls + 1)
            whole = _segmentation_mask(seg, w, h, (fw, fh)) if len(parts) > 1 else None
            if whole is not None and whole.any():  # a row holds one polygon: the row is the box of every part
                rows.append((cls, mask_box_row(whole)))
                exact[len(rows)] = whole
                report["annotations"]["polygons (several parts)"] += 1
                continue
            largest = max(parts, key=lambda p: _polygon_area(p))  # one part, or parts too thin to cover a pixel
            rows.append((cls, list(np.clip(largest / [w, h], 0, 1).reshape(-1))))
            report["annotations"]["polygon"] += 1
        elif isinstance(seg, dict):  # RLE: compressed or uncompressed counts
            whole = _segmentation_mask(seg, w, h, (fw, fh))
            if not whole.any():
                report["skipped"].append({"annotation": ann["id"], "reason": "RLE segmentation has no pixel"})
                continue
            if mask is not None:
                # the semantic mask is drawn at the JSON size and resized at the end, like the polygons
                small = whole if (fw, fh) == (w, h) else _segmentation_mask(seg, w, h, (w, h))
                mask[small] = cls + 1
            rows.append((cls, mask_box_row(whole)))
            exact[len(rows)] = whole
            report["annotations"]["rle"] += 1
        else:
            x, y, bw, bh = ann["bbox"]
            x1, y1 = max(x, 0.0), max(y, 0.0)
            x2, y2 = min(x + bw, w), min(y + bh, h)
            if x2 <= x1 or y2 <= y1:
                report["skipped"].append({"annotation": ann["id"], "reason": "empty box"})
                continue
            rows.append((cls, [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]))
            report["annotations"]["box"] += 1
    stem = Path(name).stem
    write_label_file(root / "labels" / split / f"{stem}.txt", rows)
    write_instances(root / "instances" / split / f"{stem}.json", fh, fw, exact, crowd)  # nothing when both empty
    if mask is not None:
        if mask.shape != (fh, fw):
            mask = cv2.resize(mask, (fw, fh), interpolation=cv2.INTER_NEAREST)
        write_mask(root / "masks" / split / f"{stem}.png", mask)
    report["images_written"] += 1
    report["splits"][split] += 1


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def export_coco(data: str | Path, out: str | Path, exist_ok: bool = False, verbose: bool = True) -> list[Path]:
    """Write ``instances_<split>.json`` for each split of a dataset: box rows with empty segmentation, polygon rows
    as polygons, objects with an exact mask (instances/) as compressed RLE, crowd regions as iscrowd=1 RLE.

    ``file_name`` is relative to the split's image folder; bbox is in pixels (an RLE's is its mask's extent, as
    pycocotools computes it); category ids are class id + 1.
    An existing file is overwritten only with ``exist_ok`` (it may be the COCO file the dataset came from).
    """
    spec = load_data_yaml(data)
    names = spec.get("names") or []
    if not names:
        raise DataError(f"'{data}' has no names; COCO export needs the object classes")
    out = Path(out)
    splits = [s for s in SPLIT_WORDS if spec.get(s) is not None]
    existing = [out / f"instances_{s}.json" for s in splits if (out / f"instances_{s}.json").exists()]
    if existing and not exist_ok:
        raise UsageError(
            f"{', '.join(map(str, existing))} already exist(s); pass exist_ok=True to overwrite, or choose another out="
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in splits:
        files = split_images(spec, split)
        base = (spec["root"] / spec[split]) if isinstance(spec[split], str) else spec["root"]
        coco: dict[str, Any] = {
            "info": {"description": f"exported by visionkit from {data}", "split": split},
            "images": [],
            "annotations": [],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        }
        counts: dict[str, int] = defaultdict(int)
        kinds: Counter = Counter()  # exact masks and crowd regions written
        for img_id, f in enumerate(files, 1):
            w, h = image_size(f)
            rel = os.path.relpath(f, base) if base.is_dir() else f.name
            coco["images"].append({"id": img_id, "file_name": rel, "width": w, "height": h})
            rows = read_label_file(sidecar_path(f), len(names))
            exact = _exported_instances(f, (w, h), len(rows), len(names))
            for line, (cls, coords) in enumerate(rows, 1):
                cx, cy, bw, bh = row_to_box(coords)
                ann = {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": img_id,
                    "category_id": cls + 1,
                    "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                    "iscrowd": 0,
                }
                if line in exact.objects:  # the exact mask: the row is only its box
                    ann["segmentation"] = {"size": [h, w], "counts": exact.objects[line]}
                    ann["area"] = rle_area(exact.objects[line], h, w)
                    ann["bbox"] = rle_bbox(exact.objects[line], h, w)
                    kinds["exact masks"] += 1
                elif len(coords) > 4:
                    poly = (np.asarray(coords).reshape(-1, 2) * [w, h]).reshape(-1).tolist()
                    ann["segmentation"] = [poly]
                    ann["area"] = _polygon_area(np.asarray(poly).reshape(-1, 2))
                else:
                    ann["segmentation"] = []
                    ann["area"] = bw * w * bh * h
                coco["annotations"].append(ann)
                counts[names[cls]] += 1
            for cls, region in exact.crowd:
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1,
                        "image_id": img_id,
                        "category_id": cls + 1,
                        "bbox": rle_bbox(region, h, w),
                        "segmentation": {"size": [h, w], "counts": region},
                        "area": rle_area(region, h, w),
                        "iscrowd": 1,
                    }
                )
                kinds["crowd regions"] += 1
        path = out / f"instances_{split}.json"
        atomic_write_text(path, json.dumps(coco))  # never a half-written file
        written.append(path)
        if verbose:
            extra = ", ".join(f"{n} {k}" for k, n in kinds.items())
            print(
                f"{split}: {len(files)} image(s), {len(coco['annotations'])} annotation(s)"
                + (f" ({extra})" if extra else "")
                + f" → {path}"
            )
    return written


def _exported_instances(image: Path, size: tuple[int, int], n_rows: int, n_classes: int) -> InstanceFile:
    """The image's instance file, checked against the image and its label file (a DataError naming the file and
    how to fix it otherwise); an empty one when there is none."""
    w, h = size
    path = instances_path(image)
    if not path.is_file():
        return InstanceFile(h, w)
    exact = read_instances(path, n_classes)
    if (exact.width, exact.height) != (w, h):
        raise DataError(
            f"instance file '{path}' is {exact.width}×{exact.height}, but its image '{image}' is {w}×{h}; "
            f"re-import the dataset (or delete the instance file); `visionkit data check` lists every such file"
        )
    extra = sorted(k for k in exact.objects if k > n_rows)
    if extra:
        raise DataError(
            f"instance file '{path}' has masks for line(s) {extra[:10]} but its label file has {n_rows} row(s); "
            f"re-import the dataset (or delete the instance file)"
        )
    for where, counts in [(f"objects['{k}']", c) for k, c in exact.objects.items()] + [
        (f"crowd[{i}]", c) for i, (_, c) in enumerate(exact.crowd)
    ]:
        problem = counts_problem(counts, h, w)
        if problem:
            raise DataError(f"instance file '{path}': {where}: {problem}; re-import the dataset")
    return exact

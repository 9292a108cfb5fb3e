"""``visionkit data check``: decode every image, parse every label, mask and depth file; list every problem."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from visionkit.data.format import (
    depth_path,
    image_size,
    load_data_yaml,
    mask_names,
    read_depth,
    read_label_file,
    read_mask,
    row_to_box,
    sidecar_path,
    split_images,
)
from visionkit.errors import DataError

TOL = 1e-6
ANNOTATION_KINDS = ("labels", "masks", "depth")


def layout_problems(files: list[Path]) -> dict[str, list]:
    """Problems of a split's layout that make annotations silently wrong or missing:

    - ``shared``: images whose stems collide (``a.jpg`` and ``a.png`` both read ``labels/.../a.txt``),
      as (annotation stem path, [images]);
    - ``folders``: label, mask or depth paths that are folders, not files;
    - ``none``: [] or [the labels folder expected] when no image of the split has any label, mask or depth file.
    """
    by_sidecar: dict[Path, list[Path]] = {}
    folders, found_any = [], False
    for img in files:
        try:
            label = sidecar_path(img)
        except DataError:  # not under images/: reported by the readers themselves
            continue
        by_sidecar.setdefault(label.with_suffix(""), []).append(img)
        for kind in ANNOTATION_KINDS:
            path = sidecar_path(img, kind)
            candidates = [path, path.with_suffix(".npy")] if kind == "depth" else [path]
            for p in candidates:
                if p.is_dir():
                    folders.append(p)
                elif p.is_file():
                    found_any = True
    shared = [(stem, imgs) for stem, imgs in by_sidecar.items() if len(imgs) > 1]
    none = [] if found_any or not files or not by_sidecar else [sidecar_path(files[0]).parent]
    return {"shared": shared, "folders": folders, "none": none}


def layout_messages(problems: dict[str, list], split: str) -> list[str]:
    """One line per kind of layout problem, with its count and a first example."""
    lines = []
    if problems["shared"]:
        stem, imgs = problems["shared"][0]
        n = sum(len(i) for _, i in problems["shared"])
        lines.append(
            f"{split}: {n} images share their annotation files with another image of the same stem (e.g. "
            f"{', '.join(p.name for p in imgs)} all read {stem.name}.txt/.png); rename them so each stem "
            f"is unique"
        )
    if problems["folders"]:
        lines.append(
            f"{split}: {len(problems['folders'])} label/mask/depth path(s) are folders, not files (e.g. "
            f"'{problems['folders'][0]}'); their images are read as unlabelled"
        )
    if problems["none"]:
        lines.append(
            f"{split}: no image has a label, mask or depth file (expected e.g. '{problems['none'][0]}/'"
            f"<stem>.txt); every image would be read as unlabelled — check the folder layout"
        )
    return lines


def check_dataset(data: str | Path, verbose: bool = True) -> dict:
    """Returns {'problems': [{'file', 'problem', 'severity'}], 'counts': {...}, 'errors': n, 'warnings': n}."""
    spec = load_data_yaml(data)
    names = spec.get("names") or []
    n_mask = len(mask_names(spec))
    problems: list[dict] = []
    counts: Counter = Counter()

    def problem(file, text, severity="error"):
        problems.append({"file": str(file), "problem": text, "severity": severity})

    root = Path(spec["root"]).resolve()

    def escapes(path: Path) -> bool:
        """True for a path under the dataset folder that resolves outside it (through a symlink)."""
        path = Path(path).absolute()
        return path.is_relative_to(root) and not path.resolve().is_relative_to(root)

    for split in ("train", "val", "test"):
        if spec.get(split) is None:
            if split != "test":
                problem(spec["yaml_file"], f"no '{split}' split", "warning" if split == "val" else "error")
            continue
        try:
            files = split_images(spec, split)
        except DataError as e:
            problem(spec["yaml_file"], str(e))
            continue
        if not files:
            problem(spec.get(split), f"split '{split}' has no images")
        layout = layout_problems(files)
        for stem, imgs in layout["shared"]:
            problem(
                stem.with_suffix(".txt"),
                f"images {', '.join(p.name for p in imgs)} share this annotation "
                f"stem; rename them so that each image has its own label file",
            )
        for path in layout["folders"]:
            problem(path, "is a folder, not a label/mask/depth file; its image is read as unlabelled")
        if layout["none"]:
            problem(
                layout["none"][0],
                f"split '{split}': none of its {len(files)} images has a label, mask or depth "
                f"file; expected {layout['none'][0]}/<image stem>.txt (or masks/, depth/)",
            )
        for img in files:
            counts[f"{split} images"] += 1
            for kind, path in (
                ("image", img),
                ("label file", sidecar_path(img)),
                ("mask", sidecar_path(img, "masks")),
                ("depth map", depth_path(img)),
            ):
                if path is not None and (path.exists() or path.is_symlink()) and escapes(path):
                    problem(
                        path, f"{kind} leaves the dataset folder through a symlink (to {path.resolve()})", "warning"
                    )
            try:
                with Image.open(img) as im:
                    im.load()  # a truncated file fails here, not at training time
                size = image_size(img)
            except Exception as e:
                problem(img, f"image does not decode: {type(e).__name__}: {e}")
                counts["corrupt images"] += 1
                continue
            _check_labels(img, names, counts, problem)
            _check_mask(img, size, n_mask, counts, problem)
            _check_depth(img, size, spec.get("depth_scale"), counts, problem)
    errors = sum(p["severity"] == "error" for p in problems)
    result = {"problems": problems, "counts": dict(counts), "errors": errors, "warnings": len(problems) - errors}
    if verbose:
        print(format_check(result, data))
    return result


def _check_labels(img: Path, names, counts, problem) -> None:
    path = sidecar_path(img)
    if not path.is_file():
        return
    try:
        rows = read_label_file(path, len(names) or None)
    except DataError as e:
        problem(path, str(e))
        return
    counts["label files"] += 1
    if not rows:
        counts["background images (empty label file)"] += 1
    for n, (_cls, coords) in enumerate(rows, 1):
        counts["objects"] += 1
        if min(coords) < -TOL or max(coords) > 1 + TOL:
            problem(path, f"row {n}: coordinates outside 0..1 (normalised), e.g. {min(coords):.4f}..{max(coords):.4f}")
        cx, cy, w, h = row_to_box(coords)
        if w <= 0 or h <= 0:
            problem(path, f"row {n}: zero-size box (w={w:.6f}, h={h:.6f})")


def _check_mask(img: Path, size, n_classes: int, counts, problem) -> None:
    path = sidecar_path(img, "masks")
    if not path.is_file():
        return
    try:
        mask = read_mask(path)
    except DataError as e:
        problem(path, str(e))
        return
    counts["masks"] += 1
    if mask.shape[::-1] != tuple(size):
        problem(path, f"mask is {mask.shape[1]}×{mask.shape[0]} but the image is {size[0]}×{size[1]}")
    bad = sorted(set(np.unique(mask).tolist()) - set(range(n_classes)) - {255})
    if bad:
        problem(path, f"mask values {bad[:10]} are not class ids (0..{n_classes - 1}) or 255 (ignore)")


def _check_depth(img: Path, size, depth_scale: float | None, counts, problem) -> None:
    path = depth_path(img)
    if path is None:
        return
    invalid: dict = {}
    try:
        depth = read_depth(path, depth_scale, invalid)
    except (DataError, ValueError) as e:
        problem(path, str(e))
        return
    counts["depth maps"] += 1
    if invalid.get("invalid values"):
        problem(path, f"{invalid['invalid values']} negative or non-finite depth value(s), read as invalid", "warning")
    if depth.shape[::-1] != tuple(size):
        problem(path, f"depth is {depth.shape[1]}×{depth.shape[0]} but the image is {size[0]}×{size[1]}")
    valid = depth > 0
    if not valid.any():
        problem(path, "depth map has no valid pixels (all 0)")
    elif valid.mean() < 0.1:
        problem(path, f"only {valid.mean():.1%} of depth pixels are valid", "warning")


def format_check(result: dict, data) -> str:
    lines = [f"checked {data}:"]
    lines += [f"  {k:<40} {v:>7}" for k, v in sorted(result["counts"].items())]
    if result["problems"]:
        lines.append(f"{'severity':<8}  {'file':<50}  problem")
        lines += [f"{p['severity']:<8}  {p['file'][-50:]:<50}  {p['problem']}" for p in result["problems"]]
    lines.append(f"{result['errors']} error(s), {result['warnings']} warning(s)")
    return "\n".join(lines)

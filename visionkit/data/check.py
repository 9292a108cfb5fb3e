"""``visionkit data check``: apply the dataset rules training applies (visionkit/data/rules.py), decode every image,
parse every label, instance, mask and depth file; list every problem."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from visionkit.data.format import (
    clipped_box,
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
    split_unreadable,
    unreadable_message,
)
from visionkit.data.instances import counts_problem, instances_path, read_instances, rle_bbox
from visionkit.data.rules import (
    READS_FOLDER,
    DatasetRules,
    layout_errors,
    layout_problems,
    objects_problem,
    spec_problems,
    usable_problem,
)
from visionkit.errors import DataError, UsageError

TOL = 1e-6


def task_rules(task: str | None = None) -> dict[str, DatasetRules]:
    """The dataset rules of the registered task ``task``, or of every registered task that declares some (found
    through the registry: data/ imports no task)."""
    from visionkit.registry import REGISTRY

    names = [task] if task else REGISTRY.available("task")
    rules = {n: getattr(REGISTRY.get("task", n), "dataset_rules", None) for n in names}
    if task and rules[task] is None:
        raise UsageError(f"task '{task}' reads no data.yaml images/labels dataset; `data check` has no rules for it")
    return {n: r for n, r in rules.items() if r is not None}


def check_dataset(data: str | Path, verbose: bool = True, task: str | None = None, allow_empty: bool = False) -> dict:
    """Check a data.yaml dataset against the rules training applies (visionkit/data/rules.py), then decode every
    image and parse every label, mask and depth file.

    ``task``: apply that task's rules; None: those of every task whose annotation folders (labels/, masks/,
    depth/) hold a file. ``allow_empty``: a split without labelled objects is allowed (as ``allow_empty=True`` in
    training). Returns {'problems': [{'file', 'problem', 'severity'}], 'counts': {...}, 'errors': n, 'warnings': n,
    'rules': [task names applied]}."""
    spec = load_data_yaml(data)
    names = spec.get("names") or []
    problems: list[dict] = []
    counts: Counter = Counter()

    def problem(file, text, severity="error"):
        problems.append({"file": str(file), "problem": text, "severity": severity})

    root = Path(spec["root"]).resolve()
    yaml_file = spec["yaml_file"]

    def escapes(path: Path) -> bool:
        """True for a path under the dataset folder that resolves outside it (through a symlink)."""
        path = Path(path).absolute()
        return path.is_relative_to(root) and not path.resolve().is_relative_to(root)

    splits: dict[str, tuple[list[Path], dict]] = {}
    for split in ("train", "val", "test"):
        if spec.get(split) is None:
            if split != "test":
                problem(yaml_file, f"no '{split}' split", "warning" if split == "val" else "error")
            continue
        try:
            files = split_images(spec, split)
        except DataError as e:
            problem(yaml_file, str(e))
            continue
        if not files:
            problem(spec.get(split), f"split '{split}' has no images")
        unreadable = split_unreadable(spec, split)
        if unreadable:
            problem(spec.get(split), unreadable_message(unreadable, f"split '{split}'"), "warning")
        splits[split] = (files, layout_problems(files))
    present = set().union(*(layout["kinds"] for _, layout in splits.values()))
    candidates = task_rules(task)
    applied = candidates if task else {n: r for n, r in candidates.items() if set(r.reads) & present}
    objects = any(r.objects for r in applied.values())
    usable_rules = {r.usable for r in applied.values() if r.usable}
    for text in dict.fromkeys(t for r in applied.values() for t in spec_problems(spec, r)):
        problem(yaml_file, text)
    try:
        n_mask = len(mask_names(spec))
    except DataError as e:  # mask_names that are no id: name mapping
        problem(yaml_file, str(e))
        n_mask = 0

    for split, (files, layout) in splits.items():
        for file, text in layout_errors(layout, split, yaml_file, objects or bool(usable_rules)):
            problem(file, text)
        objects_before = counts["objects"]
        usable_count: Counter = Counter()  # per rules' usable tuple: images of the split it can use
        for img in files:
            counts[f"{split} images"] += 1
            for kind, path in (
                ("image", img),
                ("label file", sidecar_path(img)),
                ("instance file", instances_path(img)),
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
            if objects and not sidecar_path(img).exists():
                counts["background images (no label file)"] += 1
            evidence, rows = _check_labels(img, size, names, counts, problem)
            if _check_instances(img, size, rows, names, counts, problem):
                evidence.add("instances")
            if _check_mask(img, size, n_mask, counts, problem):
                evidence.add("masks")
            if _check_depth(img, size, spec.get("depth_scale"), counts, problem):
                evidence.add("depth")
            for usable in usable_rules:
                usable_count[usable] += bool(evidence & set(usable))
        if objects:
            text = objects_problem(
                split, yaml_file, counts["objects"] - objects_before, files, allow_empty, "allow_empty=True"
            )
            if text:
                problem(sidecar_path(files[0]).parent, text)
        for usable in usable_rules:
            text = usable_problem(split, yaml_file, usable_count[usable], files, usable)
            if text:
                problem(sidecar_path(files[0], READS_FOLDER[usable[0]]).parent, text)
    errors = sum(p["severity"] == "error" for p in problems)
    result = {
        "problems": problems,
        "counts": dict(counts),
        "errors": errors,
        "warnings": len(problems) - errors,
        "rules": sorted(applied),
    }
    if verbose:
        print(format_check(result, data))
    return result


def _check_labels(img: Path, size, names, counts, problem) -> tuple[set[str], list | None]:
    """Checks the image's label file; returns what it gives training (``polygons``, ``empty label``: a rule's
    ``usable`` evidence) and its rows ([] without a label file, None when it does not parse)."""
    path = sidecar_path(img)
    if not path.is_file():
        return set(), []
    try:
        rows = read_label_file(path, len(names) or None)
    except DataError as e:
        problem(path, str(e))
        return set(), None
    counts["label files"] += 1
    evidence = {"polygons"} if any(len(c) > 4 for _, c in rows) else set()
    if not rows:
        counts["background images (empty label file)"] += 1
        evidence.add("empty label")
    for n, (_cls, coords) in enumerate(rows, 1):
        box, _ = clipped_box(coords, size)
        if box is not None:  # what training keeps: less than a pixel of box is dropped there
            counts["objects"] += 1
        else:
            counts["boxes under a pixel (dropped by training)"] += 1
        if min(coords) < -TOL or max(coords) > 1 + TOL:
            problem(path, f"row {n}: coordinates outside 0..1 (normalised), e.g. {min(coords):.4f}..{max(coords):.4f}")
        cx, cy, w, h = row_to_box(coords)
        if w <= 0 or h <= 0:
            problem(path, f"row {n}: zero-size box (w={w:.6f}, h={h:.6f})")
    return evidence, rows


def _check_instances(img: Path, size, rows: list | None, names, counts, problem) -> bool:
    """Checks the image's instance file (instances/xxx.json: exact masks by label line, crowd regions) against the
    image and its label file; True when it has an object with a usable exact mask."""
    path = instances_path(img)
    if not path.is_file():
        return False
    try:
        exact = read_instances(path, len(names) or None)
    except DataError as e:
        problem(path, str(e))
        return False
    counts["instance files"] += 1
    w, h = size
    if (exact.width, exact.height) != (w, h):
        problem(
            path,
            f"instance file is {exact.width}×{exact.height} but the image is {w}×{h}; re-import the dataset "
            f"(or delete the instance file)",
        )
        return False
    n_rows = len(rows) if rows is not None else None
    extra = sorted(k for k in exact.objects if n_rows is not None and k > n_rows)
    if extra:
        where = f"'{sidecar_path(img).name}' has {n_rows} row(s)" if n_rows else "there is no label row"
        problem(
            path,
            f"masks for label line(s) {extra[:10]} but {where}; the label file and its instance file disagree "
            f"(re-import, or delete the instance file)",
        )
    usable = False
    for line, text in sorted(exact.objects.items()):
        bad = counts_problem(text, h, w)
        if bad:
            problem(path, f"objects['{line}']: {bad}")
            continue
        if line in extra:
            continue
        x, y, bw, bh = rle_bbox(text, h, w)
        if bw == 0:
            problem(path, f"objects['{line}']: the mask has no pixel (the instance task skips this object)", "warning")
            continue
        counts["objects with an exact mask"] += 1
        usable = True
        if rows:
            cx, cy, rw, rh = row_to_box(rows[line - 1][1])
            row_box = np.array([(cx - rw / 2) * w, (cy - rh / 2) * h, (cx + rw / 2) * w, (cy + rh / 2) * h])
            if np.abs(row_box - [x, y, x + bw, y + bh]).max() > 1:
                problem(
                    path,
                    f"objects['{line}']: the mask spans x {x:.0f}..{x + bw:.0f}, y {y:.0f}..{y + bh:.0f} px but "
                    f"row {line} of '{sidecar_path(img).name}' is the box {row_box.round(1).tolist()}; detection "
                    f"and the instance task would disagree (re-import)",
                    "warning",
                )
    for i, (_cls, text) in enumerate(exact.crowd):
        bad = counts_problem(text, h, w)
        if bad:
            problem(path, f"crowd[{i}]: {bad}")
        else:
            counts["crowd (ignore) regions"] += 1
    return usable


def _check_mask(img: Path, size, n_classes: int, counts, problem) -> bool:
    """Checks the image's mask; True when it has one that reads."""
    path = sidecar_path(img, "masks")
    if not path.is_file():
        return False
    try:
        mask = read_mask(path)
    except DataError as e:
        problem(path, str(e))
        return False
    counts["masks"] += 1
    if mask.shape[::-1] != tuple(size):
        problem(path, f"mask is {mask.shape[1]}×{mask.shape[0]} but the image is {size[0]}×{size[1]}")
    bad = sorted(set(np.unique(mask).tolist()) - set(range(n_classes)) - {255})
    if bad:
        problem(path, f"mask values {bad[:10]} are not class ids (0..{n_classes - 1}) or 255 (ignore)")
    return True


def _check_depth(img: Path, size, depth_scale: float | None, counts, problem) -> bool:
    """Checks the image's depth map; True when it has one with a valid pixel."""
    path = depth_path(img)
    if path is None:
        return False
    invalid: dict = {}
    try:
        depth = read_depth(path, depth_scale, invalid)
    except (DataError, ValueError) as e:
        problem(path, str(e))
        return False
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
    return bool(valid.any())


def format_check(result: dict, data) -> str:
    rules = f" (the rules of: {', '.join(result['rules'])})" if result.get("rules") else ""
    lines = [f"checked {data}{rules}:"]
    lines += [f"  {k:<40} {v:>7}" for k, v in sorted(result["counts"].items())]
    if result["problems"]:
        lines.append(f"{'severity':<8}  {'file':<50}  problem")
        lines += [f"{p['severity']:<8}  {p['file'][-50:]:<50}  {p['problem']}" for p in result["problems"]]
    lines.append(f"{result['errors']} error(s), {result['warnings']} warning(s)")
    return "\n".join(lines)

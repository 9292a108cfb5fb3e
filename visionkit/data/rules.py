"""The rules a data.yaml dataset must meet, in one place: ``visionkit data check`` reports what breaks them and
training refuses the same datasets (docs/dataset-format.md, "What check and training refuse").

A task declares what it needs as :class:`DatasetRules` (``Task.dataset_rules``); the functions here turn a parsed
data.yaml and a split's files into problem messages. Check lists every message; training raises them
(:func:`refuse`). Nothing here names a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionkit.data.format import mask_names, sidecar_path
from visionkit.errors import DataError

ANNOTATION_KINDS = ("labels", "masks", "depth", "instances")


@dataclass(frozen=True)
class DatasetRules:
    """What a task needs of a data.yaml dataset.

    Attributes:
        reads: annotation folders the task reads (``labels``, ``masks``, ``depth``, ``instances``); ``data
            check`` without ``task=`` applies the rules of every task whose folders hold a file.
        names: data.yaml must list ``names`` (the class of every label row).
        min_mask_classes: classes the masks must distinguish (``mask_names`` rule); 0 = no rule.
        objects: labels are boxes or polygons: a split without one labelled object is an error unless the
            ``allow_empty`` key is set (training on background images only).
        usable: what makes an image usable for training (``masks``: a mask file; ``polygons``: polygon rows;
            ``instances``: an object with an exact mask in ``instances/``;
            ``empty label``: an empty label file, a background image; ``depth``: a depth map with a valid pixel);
            a split without one usable image is an error.
    """

    reads: tuple[str, ...] = ("labels",)
    names: bool = False
    min_mask_classes: int = 0
    objects: bool = False
    usable: tuple[str, ...] = ()


def spec_problems(spec: dict[str, Any], rules: DatasetRules) -> list[str]:
    """Problems of the data.yaml itself under ``rules``."""
    source = spec.get("yaml_file", "data.yaml")
    problems = []
    if rules.names and not spec.get("names"):
        problems.append(f"'{source}' has no names: list the classes, e.g. names: {{0: cat, 1: dog}}")
    if rules.min_mask_classes:
        try:
            n = len(mask_names(spec))
        except DataError as e:
            problems.append(str(e))
        else:
            if n < rules.min_mask_classes:
                problems.append(
                    f"'{source}' defines {n} mask class(es); masks need at least {rules.min_mask_classes} "
                    f"(background and one class: names or mask_names in data.yaml)"
                )
    return problems


def layout_problems(files: list[Path]) -> dict[str, list]:
    """Problems of a split's layout that make annotations silently wrong or missing:

    - ``shared``: images whose stems collide (``a.jpg`` and ``a.png`` both read ``labels/.../a.txt``,
      ``masks/.../a.png`` and ``depth/.../a.png``), as (annotation stem path, [images]); an image listed twice
      counts too;
    - ``folders``: label, mask or depth paths that are folders, not files;
    - ``two_depths``: depth stems with both a .png and a .npy file (which one is meant is unknowable);
    - ``none``: [] or [the labels folder expected] when no image of the split has any label, mask or depth file;
    - ``kinds``: the annotation kinds (``labels``, ``masks``, ``depth``) with at least one file.
    """
    by_sidecar: dict[Path, list[Path]] = {}
    folders, two_depths, kinds = [], [], set()
    for img in files:
        try:
            label = sidecar_path(img)
        except DataError:  # not under images/: reported by the readers themselves
            continue
        by_sidecar.setdefault(label.with_suffix(""), []).append(img)
        for kind in ANNOTATION_KINDS:
            path = sidecar_path(img, kind)
            candidates = [path, path.with_suffix(".npy")] if kind == "depth" else [path]
            present = 0
            for p in candidates:
                if p.is_dir():
                    folders.append(p)
                elif p.is_file():
                    kinds.add(kind)
                    present += 1
            if present > 1:
                two_depths.append(path.with_suffix(""))
    shared = [(stem, imgs) for stem, imgs in by_sidecar.items() if len(imgs) > 1]
    none = [] if kinds or not files or not by_sidecar else [sidecar_path(files[0]).parent]
    return {"shared": shared, "folders": folders, "two_depths": sorted(set(two_depths)), "none": none, "kinds": kinds}


def layout_errors(layout: dict[str, list], split: str, source: str, covered: bool = False) -> list[tuple[Path, str]]:
    """(first example, message) per kind of layout problem of ``split`` (count and that example). ``none`` is left to
    :func:`objects_problem` or :func:`usable_problem` when the rules have them (``covered``): their messages name
    the folder looked in and the way out."""
    where = f"'{source}' split '{split}'"
    lines: list[tuple[Path, str]] = []
    if layout["shared"]:
        stem, imgs = layout["shared"][0]
        n = sum(len(i) for _, i in layout["shared"])
        listed = ", ".join(p.name for p in imgs)
        lines.append(
            (
                stem.with_suffix(".txt"),
                f"{where}: {n} images share their annotation files with another image of the same stem (e.g. "
                f"{listed} all read {stem.name}.txt/.png in {stem.parent}); the second would be trained with the "
                f"first one's labels: rename them so that each stem is unique",
            )
        )
    if layout["folders"]:
        lines.append(
            (
                layout["folders"][0],
                f"{where}: {len(layout['folders'])} label/mask/depth path(s) are folders, not files (e.g. "
                f"'{layout['folders'][0]}'); remove or rename them",
            )
        )
    if layout["two_depths"]:
        d = layout["two_depths"][0]
        lines.append(
            (
                d.with_suffix(".npy"),
                f"{where}: {len(layout['two_depths'])} depth map(s) exist both as .png and .npy (e.g. '{d}.png' and "
                f"'{d}.npy'); keep one",
            )
        )
    if layout["none"] and not covered:
        lines.append(
            (
                layout["none"][0],
                f"{where}: none of its images has a label, mask or depth file (looked in "
                f"'{layout['none'][0]}'{'' if layout['none'][0].is_dir() else ', which does not exist'}); every image "
                f"would be read as unlabelled: check data.yaml's path: and the folder names",
            )
        )
    return lines


def objects_problem(
    split: str, source: str, n_objects: int, files: list[Path], allow_empty: bool, fix: str = "allow_empty=True"
) -> str | None:
    """The rule of tasks whose labels are boxes or polygons: a split with images but no labelled object is an
    error naming the labels folder(s) it looked in, unless ``allow_empty`` (background images only, on purpose).
    Images without a label file among labelled ones stay background images; only an all-empty split is refused."""
    if n_objects or allow_empty or not files:
        return None
    folders = []
    for f in files:
        try:
            folder = sidecar_path(f).parent
        except DataError:
            continue
        if folder not in folders:
            folders.append(folder)
    if not folders:
        return None  # no image under images/: the readers say so
    n_files = sum(1 for f in files if sidecar_path(f).is_file())
    state = (
        "which does not exist"
        if not folders[0].is_dir()
        else "which holds no label file for these images"
        if not n_files
        else f"whose {n_files} label file(s) hold no rows"
    )
    more = f" (and {len(folders) - 1} more folder(s))" if len(folders) > 1 else ""
    return (
        f"'{source}' split '{split}': none of its {len(files)} images has a labelled object; looked in "
        f"'{folders[0]}'{more}, {state}. Fix data.yaml's path: or the labels folder, or pass {fix} to use "
        f"background images only"
    )


def usable_problem(split: str, source: str, n_usable: int, files: list[Path], usable: tuple[str, ...]) -> str | None:
    """A split none of whose images the task can use (no mask, no polygon, no valid depth map): an error naming
    the folders looked in."""
    if n_usable or not files:
        return None
    try:
        where = ", ".join(
            f"'{sidecar_path(files[0], k).parent}'" for k in dict.fromkeys(READS_FOLDER[u] for u in usable)
        )
    except DataError:
        return None  # no image under images/: the readers say so
    return (
        f"'{source}' split '{split}': none of its {len(files)} images is usable (each needs "
        f"{' or '.join(USABLE_WORDS[u] for u in usable)}); looked in {where}"
    )


READS_FOLDER = {
    "masks": "masks",
    "polygons": "labels",
    "instances": "instances",
    "empty label": "labels",
    "depth": "depth",
}
USABLE_WORDS = {
    "masks": "a mask",
    "polygons": "polygon rows",
    "instances": "an exact object mask (instances/)",
    "empty label": "an empty label file (a background image)",
    "depth": "a depth map with a valid pixel",
}


def refuse(problems: list[str]) -> None:
    """Raise the problems found (training's side of the rules): one DataError listing them all."""
    problems = [p for p in problems if p]
    if problems:
        raise DataError(problems[0] if len(problems) == 1 else "\n".join(["dataset refused:", *problems]))

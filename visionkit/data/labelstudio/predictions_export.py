"""``predict ... save_labelstudio=True``: a tasks JSON whose ``predictions`` Label Studio imports as
pre-annotations, for users who do not run the ML backend. Each task points at its image through Label Studio's
local-files URL (``/data/local-files/?d=PATH``, PATH relative to ``ls_root``)."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

from visionkit.cfg import Settings
from visionkit.data.labelstudio.prelabel import RegionWriter, Target, check_task, default_config, model_version, plan
from visionkit.data.output import atomic_write_text
from visionkit.errors import DataError, UsageError

TASKS_FILE = "labelstudio_tasks.json"
CONFIG_FILE = "labelstudio_config.xml"


def labelstudio_target(task, names: list[str], args: Settings) -> tuple[str, Target]:
    """The labeling config (label_config= or one made for the model) and where the regions go in it; called before
    predicting, so a config that does not fit fails first."""
    if args.label_config:
        path = Path(str(args.label_config))
        if not path.is_file():
            raise UsageError(f"label_config '{path}' does not exist; give the project's labeling config (XML)")
        config = path.read_text()
    else:
        check_task(task)
        config = default_config(task, names)
    return config, plan(task, names, config, args.names_map)


def write_labelstudio_tasks(
    results: list[dict],
    task,
    names: list[str],
    save_dir: Path,
    args: Settings,
    model_path: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Write labelstudio_tasks.json (one task per predicted image file) and the labeling config it fits;
    returns a summary. Video frames and in-memory images have no file for Label Studio to show: counted, skipped."""
    config, target = labelstudio_target(task, names, args)
    files = [(r, Path(r["image"])) for r in results if Path(r["image"]).is_file()]
    skipped = len(results) - len(files)
    root = Path(str(args.ls_root)) if args.ls_root else _common_folder([p for _, p in files])
    version = model_version(model_path) if model_path and Path(model_path).is_file() else "visionkit"
    writer = RegionWriter(target)
    tasks = []
    for r, path in files:
        rel = _relative(path, root)
        ref = "/data/local-files/?d=" + urllib.parse.quote(rel)
        tasks.append(
            {"data": {target.data_key: ref}, "predictions": [{"model_version": version, **writer.prediction(r)}]}
        )
    atomic_write_text(save_dir / CONFIG_FILE, config)
    atomic_write_text(save_dir / TASKS_FILE, json.dumps(tasks, indent=1))
    summary = {
        "tasks": len(tasks),
        "skipped": skipped,
        "regions": dict(writer.written),
        "root": str(root),
        "unused_classes": target.unused,
    }
    if verbose:
        regions = ", ".join(f"{n} {k}" for k, n in writer.written.items()) or "no regions"
        print(
            f"Label Studio pre-annotations: {len(tasks)} task(s), {regions} → {save_dir / TASKS_FILE}"
            + (f" ({skipped} video frame(s) or array(s) skipped: no image file)" if skipped else "")
            + f"\n  labeling config: {save_dir / CONFIG_FILE}; images are referenced under {root}: run Label Studio "
            f"with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}, "
            f"add a Local Storage on that folder, then import the JSON"
        )
    return summary


def _common_folder(paths: list[Path]) -> Path:
    if not paths:
        return Path.cwd()
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as e:
        raise DataError(
            f"image '{path}' is not inside ls_root '{root}'; set ls_root= to a folder holding every image"
        ) from e

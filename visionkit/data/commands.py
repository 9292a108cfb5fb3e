"""``visionkit data ...``: import, export, check and stats, as Python functions the CLI calls.

Each command has its own keys (with defaults and a comment each); they are checked like the training keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.cfg import Settings, check_overrides
from visionkit.errors import UsageError

COMMON = {"verbose": (True, "print tables and progress")}
KEYS: dict[str, dict[str, tuple[Any, str]]] = {
    "import labelstudio": {
        "src": (None, "export file (JSON or JSON_MIN), or a server URL http://host:port"),
        "project": (None, "project id (server import)"),
        "token": (None, "access token for a server (legacy or personal); default $LABEL_STUDIO_API_KEY"),
        "images": (None, "folder holding the images the tasks point to (by relative path or file name)"),
        "out": (None, "output dataset folder, e.g. datasets/NAME"),
        "config": (None, "labeling config XML file: class order for a file import"),
        "names": (None, "class list, or a text file with one class per line; overrides the config"),
        "val": (0.2, "fraction of tasks in the val split"),
        "test": (0.0, "fraction of tasks in the test split"),
        "seed": (0, "seed of the split"),
        "annotations": ("ground_truth", "ground_truth (else latest), latest, first, all (one sample each), merge"),
        "predictions": (False, "use predictions for tasks without annotations"),
        "background": (False, "keep tasks without annotations as background images"),
        "unknown": ("error", "a label missing from the config: error, or add it"),
        "download": (False, "fetch http(s) image URLs"),
        "exist_ok": (False, "replace out if a previous import wrote it (refused when it holds other files)"),
        "timeout": (60.0, "seconds a server request may take before it is tried again (server import; > 0)"),
        "retries": (4, "further attempts after a 5xx, timeout or dropped connection, waits doubling from 1 s (0-10)"),
    },
    "import coco": {
        "src": (
            None,
            "COCO instances JSON (a list: one per split, its name or folder saying train/val/test), or a folder of "
            "them (Roboflow's COCO export)",
        ),
        "images": (None, "folder holding the images (default: each JSON's own folder)"),
        "out": (None, "output dataset folder"),
        "val": (0.2, "fraction of images in val when src is a single file"),
        "seed": (0, "seed of the split"),
        "exist_ok": (False, "replace out if a previous import wrote it (refused when it holds other files)"),
    },
    "export coco": {
        "data": (None, "dataset data.yaml"),
        "out": (None, "folder for instances_<split>.json"),
        "exist_ok": (False, "overwrite instances_<split>.json files that exist in out"),
    },
    "check": {
        "data": (None, "dataset data.yaml"),
        "task": (
            None,
            "check with this task's rules (e.g. the one you will train); null = every task whose folders "
            "(labels/, masks/, depth/) hold a file",
        ),
        "allow_empty": (False, "a split without labelled objects is allowed (as allow_empty=True in training)"),
    },
    "stats": {
        "data": (None, "dataset data.yaml"),
        "out": ("runs/data/stats", "folder for mosaic.png and box_sizes.png"),
        "samples": (16, "images in the mosaic"),
    },
}


def command_args(command: str, overrides: dict[str, Any]) -> Settings:
    """Typed, checked keys of ``command``; a missing required key (default None) is named."""
    spec = {**KEYS[command], **COMMON}
    defaults = {k: v for k, (v, _) in spec.items()}
    return Settings({**defaults, **check_overrides(overrides, defaults, source=f"key for `visionkit data {command}`")})


def _require(args: Settings, *keys: str, command: str) -> None:
    for k in keys:
        if args[k] in (None, ""):
            raise UsageError(f"`visionkit data {command}` needs {k}=  ({KEYS[command][k][1]})")


def _names(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    path = Path(str(value))
    if path.is_file():
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def import_labelstudio(**overrides) -> dict:
    """Label Studio export file or live server → dataset; returns the import report."""
    from visionkit.data.labelstudio import import_labelstudio as run_import
    from visionkit.data.labelstudio.sources import fetch_project, load_export

    cmd = "import labelstudio"
    a = command_args(cmd, overrides)
    _require(a, "src", "out", command=cmd)
    src = str(a.src)
    config_xml, headers, base_url, source_paths = None, {}, None, {"config": a.config}
    if src.startswith(("http://", "https://")):
        if a.project is None:
            raise UsageError("a server import needs project=ID")
        if not (float(a.timeout) > 0 and 0 <= int(a.retries) <= 10):
            raise UsageError(f"timeout={a.timeout} must be > 0 and retries={a.retries} within 0-10")
        tasks, config_xml, headers = fetch_project(
            src, int(a.project), a.token, timeout=float(a.timeout), retries=int(a.retries), verbose=a.verbose
        )
        base_url, source = src, f"{src} project {a.project}"
    else:
        source_paths["src"] = src
        tasks, fmt = load_export(src)
        source = f"{src} ({fmt})"
    if a.config:
        path = Path(a.config)
        if not path.is_file():
            raise UsageError(f"config file '{path}' does not exist")
        config_xml = path.read_text()
    return run_import(
        tasks,
        a.out,
        exist_ok=a.exist_ok,
        verbose=a.verbose,
        source=source,
        source_paths=source_paths,
        config_xml=config_xml,
        names=_names(a.names),
        images_dir=a.images,
        annotations=a.annotations,
        predictions=a.predictions,
        background=a.background,
        unknown=a.unknown,
        val=a.val,
        test=a.test,
        seed=a.seed,
        download=a.download,
        headers=headers,
        base_url=base_url,
    )


def import_coco(**overrides) -> dict:
    from visionkit.data.coco import import_coco as run_import

    a = command_args("import coco", overrides)
    _require(a, "src", "out", command="import coco")
    return run_import(a.src, a.images, a.out, val=a.val, seed=a.seed, exist_ok=a.exist_ok, verbose=a.verbose)


def export_coco(**overrides) -> list[Path]:
    from visionkit.data.coco import export_coco as run_export

    a = command_args("export coco", overrides)
    _require(a, "data", "out", command="export coco")
    return run_export(a.data, a.out, exist_ok=a.exist_ok, verbose=a.verbose)


def check(**overrides) -> dict:
    from visionkit.data.check import check_dataset

    a = command_args("check", overrides)
    _require(a, "data", command="check")
    return check_dataset(a.data, verbose=a.verbose, task=a.task, allow_empty=a.allow_empty)


def stats(**overrides) -> dict:
    from visionkit.data.stats import dataset_stats

    a = command_args("stats", overrides)
    _require(a, "data", command="stats")
    return dataset_stats(a.data, a.out, int(a.samples), verbose=a.verbose)


COMMANDS = {
    "import labelstudio": import_labelstudio,
    "import coco": import_coco,
    "export coco": export_coco,
    "check": check,
    "stats": stats,
}

"""What the exporters check and calibrate with: image files from ``source=`` or from a split of the model's data,
and the metric change between a float file and its compressed copy on the validation split."""

from __future__ import annotations

from pathlib import Path

from visionkit.cfg import Settings
from visionkit.errors import DataError, UsageError


def source_files(source) -> list[Path]:
    if not source:
        return []
    from visionkit.engine.predictor import is_video, resolve_sources

    return [p for p in resolve_sources(source) if isinstance(p, Path) and not is_video(p)]


def split_files(task, args: Settings, ckpt: dict, split: str, n: int) -> list[Path]:
    """Up to ``n`` image files spread over ``split`` of ``data=`` (or the data the checkpoint was trained on);
    empty when no dataset is found."""
    from visionkit.data.format import is_image, split_images

    trained = ckpt.get("train_args", {}) or {}
    data_args = args.replace(data=args.data or trained.get("data") or ckpt.get("data"), verbose=False)
    for key in ("root", "datasets_dir"):
        if args[key] is None and trained.get(key) is not None:
            data_args[key] = trained[key]
    if not data_args.data:
        return []
    try:
        data = task.resolve_data(data_args)
    except (DataError, UsageError, OSError):
        return []
    spec, root = data.extra.get("spec"), data.extra.get("root")
    try:
        if spec is not None:
            files = split_images(spec, split)
        elif root is not None:
            files = sorted(p for p in (Path(root) / split).rglob("*") if is_image(p))
        else:
            return []
    except DataError:
        return []
    step = max(1, len(files) // max(1, n))  # spread the picks over the split
    return files[::step][:n]


def metric_change(float_path: Path, small_path: Path, args: Settings, ckpt: dict, score_file) -> str:
    """'<metric> a → b (+d)' of the float and the compressed file on the validation split; '' without data.
    ``score_file(path, **overrides)`` → (metrics, fitness key) of one file."""
    trained = ckpt.get("train_args", {}) or {}
    data = args.data or trained.get("data") or ckpt.get("data")
    if not data:
        return ""
    scores, key = [], None
    for path in (float_path, small_path):
        overrides = {
            "data": data,
            "verbose": False,
            "plots": False,
            "batch": 8,
            "workers": 0,
            "project": str(float_path.parent / "val"),
        }
        for name in ("root", "datasets_dir"):
            value = args[name] if args[name] is not None else trained.get(name)
            if value is not None:
                overrides[name] = value
        try:
            metrics, key = score_file(path, **overrides)
        except (DataError, UsageError):
            return ""
        scores.append(metrics)
    a, b = scores[0].get(key), scores[1].get(key)
    if a is None or b is None:
        return ""
    return f"val {key} {a:.4f} (float) → {b:.4f} ({b - a:+.4f})"

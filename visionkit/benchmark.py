"""``visionkit benchmark``: one trained model in every deployable format, side by side. For each format: the file's
size, the task's metric on the validation split (when the data is known) and its latency (batch 1, warm-up calls,
then the median and 95th percentile of ``calls`` timed calls, threads as planned for predict). A format that fails
says why in its row and the others go on. The table is printed and written to ``benchmark.csv`` and
``benchmark.json`` in the run folder.

    visionkit benchmark model=runs/detect/train/weights/best.pt data=custom.yaml imgsz=320
    visionkit benchmark model=best.pt formats=pt,onnx,onnx-int8 calls=200
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

from visionkit.cfg import Range
from visionkit.errors import UsageError

# format name → the export settings that make its file ("pt": the checkpoint itself)
FORMATS: dict[str, dict[str, Any] | None] = {
    "pt": None,
    "onnx": {"format": "onnx"},
    "onnx-int8": {"format": "onnx", "int8": True},
    "openvino": {"format": "openvino"},
    "openvino-int8": {"format": "openvino", "int8": True},
    "mediapipe": {"format": "mediapipe"},
    "mediapipe-fp16": {"format": "mediapipe", "half": True},
    "mediapipe-int8": {"format": "mediapipe", "int8": True},
}
DEFAULT_FORMATS = "pt,onnx,onnx-int8,mediapipe"
KEYS = {
    "formats": (DEFAULT_FORMATS, f"benchmark: comma-separated formats ({', '.join(FORMATS)})", None),
    "calls": (50, "benchmark: timed calls per format (after warm-up): latency median and p95", Range(int, 1, 10**5)),
}
COLUMNS = ("format", "file", "size_mb", "metric", "value", "latency_ms", "p95_ms", "error")


def parse_formats(text) -> list[str]:
    names = [f.strip().lower() for f in str(text).split(",") if f.strip()]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise UsageError(f"bad value formats={text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return list(dict.fromkeys(names))


def benchmark(**overrides: Any) -> list[dict[str, Any]]:
    """Benchmark ``model=`` (a .pt checkpoint) in each of ``formats``; returns one row per format."""
    from visionkit.api import Model
    from visionkit.cfg import resolve
    from visionkit.engine.utils import make_run_dir

    args = resolve(overrides, KEYS)
    if not args.model or not str(args.model).endswith(".pt"):
        raise UsageError("visionkit benchmark needs model=PATH.pt (a trained checkpoint; it exports the other formats)")
    formats = parse_formats(args.formats)
    source = Model(str(args.model))
    ckpt = source.ckpt
    task = source.task_name
    data = args.data or (ckpt.get("train_args") or {}).get("data") or ckpt.get("data")
    imgsz = int(args.imgsz or ckpt["imgsz"])
    save_dir = make_run_dir(args, task, "benchmark")
    verbose = bool(args.verbose)
    if verbose:
        from visionkit.engine.cpu_features import cpu_features

        print(f"benchmark {args.model} ({task}) at imgsz {imgsz}: {', '.join(formats)}; data {data or 'none'}")
        print(f"CPU: {cpu_features().describe()}")  # int8 formats pay only with an int8 dot-product instruction
    rows = []
    for name in formats:
        row = {"format": name, "file": "", "size_mb": None, "metric": "", "value": None}
        row.update(latency_ms=None, p95_ms=None, error="")
        try:
            path = _file(source, name, imgsz, data)
            weights = path.with_suffix(".bin") if path.suffix == ".xml" else None  # OpenVINO's weights file
            size = path.stat().st_size + (weights.stat().st_size if weights and weights.is_file() else 0)
            row["file"], row["size_mb"] = str(path), round(size / 1e6, 3)
            model = Model(str(path), task=task)
            try:
                channels = int(ckpt["in_channels"])
                row["latency_ms"], row["p95_ms"] = _latency(model.net, channels, imgsz, int(args.calls), args)
                if data:
                    metrics = model.val(data=str(data), imgsz=imgsz, batch=1, verbose=False, plots=False,
                                        project=str(save_dir / "val"), name=name, workers=args.workers)  # fmt: skip
                    row["metric"] = model.val_metrics.fitness_key
                    row["value"] = round(float(metrics[row["metric"]]), 5)
            finally:
                if hasattr(model.net, "close"):  # a MediaPipe Task
                    model.net.close()
        except Exception as e:  # this format's row says why; the others go on
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rows.append(row)
        if verbose:
            print(_line(row))
    _write(save_dir, rows)
    if verbose:
        print("\n" + table(rows) + f"\nresults → {save_dir / 'benchmark.csv'}")
    return rows


def _file(source, name: str, imgsz: int, data) -> Path:
    settings = FORMATS[name]
    if settings is None:
        return Path(source.ckpt_path)
    extra = {"data": str(data)} if data and (settings.get("int8")) else {}
    size = {"imgsz": imgsz}
    return source.export(**settings, **size, **extra, verbose=False)


def _latency(net, channels: int, imgsz: int, calls: int, args) -> tuple[float, float]:
    """(median, p95) milliseconds of one batch-1 forward of a backend (the network, or an exported file's runtime),
    after warm-up calls, with the threads predict would use."""
    import torch

    from visionkit.engine.threads import plan_cpus, use_threads

    net.eval()
    size = getattr(net, "size", None)  # (h, w) of a MediaPipe file, which takes its own input size only
    size = tuple(size) if isinstance(size, (tuple, list)) else (imgsz, imgsz)
    x = torch.rand(1, channels, *size)
    plan = plan_cpus(args.threads, 0, "cpu")
    times = []
    with use_threads(plan.threads), torch.inference_mode():
        for i in range(max(3, calls // 10) + calls):
            start = time.perf_counter()
            net(x)
            if i >= max(3, calls // 10):
                times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return round(statistics.median(times), 3), round(times[min(len(times) - 1, int(0.95 * len(times)))], 3)


def _line(row: dict) -> str:
    if row["error"]:
        return f"{row['format']}: FAILED {row['error']}"
    metric = f", {row['metric']} {row['value']:.4f}" if row["metric"] else ""
    return f"{row['format']}: {row['size_mb']:.2f} MB, {row['latency_ms']:.2f} ms (p95 {row['p95_ms']:.2f}){metric}"


def table(rows: list[dict]) -> str:
    """The rows as an aligned text table."""
    metric = next((r["metric"] for r in rows if r["metric"]), "metric")
    lines = [f"{'format':<16}{'size MB':>10}{metric:>14}{'ms (median)':>14}{'ms (p95)':>11}  note"]
    for r in rows:
        if r["error"]:
            lines.append(f"{r['format']:<16}{'':>10}{'':>14}{'':>14}{'':>11}  failed: {r['error']}")
            continue
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        lines.append(f"{r['format']:<16}{r['size_mb']:>10.2f}{value:>14}{r['latency_ms']:>14.2f}{r['p95_ms']:>11.2f}")
    return "\n".join(lines)


def _write(save_dir: Path, rows: list[dict]) -> None:
    with open(save_dir / "benchmark.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (save_dir / "benchmark.json").write_text(json.dumps(rows, indent=1))

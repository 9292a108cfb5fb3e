"""Export a checkpoint to a .tflite file that MediaPipe Tasks load unchanged, then check it the way the ONNX
exporter checks its files: MediaPipe runs the written file on sample images and its results are compared with
PyTorch's. A mismatch fails the export and leaves the file as ``*.failed.tflite``.

Checks (float files): classifier top-5 classes equal and scores within 1e-3; segmenter category masks equal to
PyTorch's argmax on >= 99.9 % of pixels; value maps (depth) within 1e-3 relative; detector the same detections
(class, score within 1e-3, box within 1 px) at the same NMS threshold. fp16 and int8 files are compared with the
float file on the validation split instead (size and metric change are printed)."""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.errors import ExportError, UsageError
from visionkit.export import tflite_convert as convert
from visionkit.export import tflite_metadata as metadata
from visionkit.export.graphs import EdgeInput
from visionkit.export.samples import metric_change, source_files, split_files
from visionkit.limits import MAX_IMGSZ
from visionkit.registry import REGISTRY, register

N_CHECK_IMAGES = 4
N_CALIBRATION_IMAGES = 32


def edge_size(args: Settings, ckpt: dict, stride: int) -> tuple[int, int]:
    """(height, width) of the exported input: ``imgsz`` as one size or h,w (MediaPipe's ObjectDetector stretches
    every image to it), rounded up to the model stride."""
    value = args.imgsz or ckpt["imgsz"]
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v.strip()]
    pair = list(value) if isinstance(value, (list, tuple)) else [value, value]
    try:
        h, w = (int(v) for v in pair)
    except (TypeError, ValueError):
        raise UsageError(f"bad value imgsz={value!r}: expected one size (320) or height,width (240,320)") from None
    if not (1 <= h <= MAX_IMGSZ and 1 <= w <= MAX_IMGSZ):
        raise UsageError(f"bad value imgsz={value!r}: each side must be in 1..{MAX_IMGSZ}")
    rounded = (math.ceil(h / stride) * stride, math.ceil(w / stride) * stride)
    if rounded != (h, w):
        warnings.warn(
            f"imgsz {h},{w} is not a multiple of the model stride {stride}; exporting at {rounded[0]},{rounded[1]}",
            stacklevel=3,
        )
    return rounded


@register("export_format", "mediapipe")
class MediaPipeWriter:
    """format=mediapipe (alias tflite): a .tflite that MediaPipe Tasks load, checked with MediaPipe."""

    suffix = ".tflite"
    size_pair = True  # imgsz may be height,width: MediaPipe feeds one fixed input size
    defaults: dict = {}

    def write(self, net, task, ckpt: dict, args: Settings, out: Path, score_file) -> Path:
        return export_mediapipe(net, task, ckpt, args, out, score_file)


def kind_of(graph) -> Any:
    """The MediaPipe facet (visionkit.runtime.mediapipe_kind.MediaPipeKind) of a task's edge graph."""
    return REGISTRY.build("mediapipe_kind", graph.kind)


def export_mediapipe(net: torch.nn.Module, task, ckpt: dict, args: Settings, out: Path, score_file=None) -> Path:
    """Write ``out`` (.tflite with MediaPipe metadata), check it with MediaPipe Tasks; returns the path.
    ``score_file(path, **overrides)`` validates a file (the metric change of a compressed file; None: not shown)."""
    if task.mediapipe_kind is None:
        raise UsageError(
            f"a {task.name} model cannot be exported for MediaPipe: its task has no MediaPipe facet (Task."
            f"mediapipe_kind and edge_graph; no MediaPipe Task reads its outputs). Export format=onnx instead"
        )
    convert.require_edge_packages()
    if args.half and args.int8:
        raise UsageError("half=True and int8=True are two ways to shrink the file; pick one")
    if args.dynamic:
        raise UsageError(
            "dynamic=True does not apply to MediaPipe files: MediaPipe feeds one fixed input size (set "
            "it with imgsz=H,W)"
        )
    verbose = args.verbose
    net = net.cpu().eval().float()
    h, w = edge_size(args, ckpt, net.stride)
    inputs = EdgeInput(int(ckpt["in_channels"]), ckpt["mean"], ckpt["std"])
    graph = task.edge_graph(net, inputs, (h, w), args).eval()
    calibration = _images(task, args, ckpt, "train", N_CALIBRATION_IMAGES, (h, w)) if args.int8 else None
    if args.int8 and not calibration:
        raise UsageError(
            "int8=True calibrates on real images: pass data= (a dataset with a train split) or "
            "source= (a folder of images like those the model will see)"
        )
    check_images = _images(task, args, ckpt, "val", N_CHECK_IMAGES, (h, w)) or _noise_images(h, w)
    float_model = convert.to_tflite(graph, torch.rand(1, h, w, 3))
    record = {
        "task": ckpt["task"],
        "kind": graph.kind,
        "names": list(ckpt["names"]),
        "imgsz": [h, w],
        "in_channels": int(ckpt["in_channels"]),
        "mean": list(ckpt["mean"]),
        "std": list(ckpt["std"]),
        "input": "float32 (1, H, W, 3) RGB; MediaPipe scales pixels by 1/255 (metadata mean 0, std 255)",
        "metadata": getattr(graph, "metadata", {}),
        "precision": "float32",
        "data": _trained_on(ckpt),
        "visionkit_version": ckpt.get("versions", {}).get("visionkit", ""),
        "model_config": ckpt["model_config"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = kind_of(graph)
    float_file = _with_metadata(float_model, record, kind)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.tflite"
        float_path.write_bytes(float_file)
        problems = verify(graph, kind, float_path, record, check_images)
        if problems:
            failed = out.with_suffix(".failed.tflite")
            failed.write_bytes(float_file)
            raise ExportError(
                f"MediaPipe's results differ from PyTorch's: {'; '.join(problems[:3])}; the file is "
                f"kept at {failed} for inspection"
            )
        summary = "MediaPipe vs PyTorch checked on " + f"{len(check_images)} image(s)"
        final = float_file
        if args.half or args.int8:
            precision = "float16 weights" if args.half else "int8"
            small = (
                convert.fp16_weights(float_model)
                if args.half
                else convert.int8_static(float_model, [_as_input(i) for i in calibration])
            )
            small = convert.inline_buffers(small)  # the quantizer may store weights after the flatbuffer
            final = _with_metadata(small, {**record, "precision": precision}, kind)
            small_path = Path(tmp) / "small.tflite"
            small_path.write_bytes(final)
            summary += f"; {precision}: {len(final) / 1e6:.2f} MB vs {len(float_file) / 1e6:.2f} MB float"
            change = metric_change(float_path, small_path, args, ckpt, score_file) if score_file else ""
            if change:
                summary += f", {change}"
        tmp_out = out.with_suffix(".tflite.tmp")
        tmp_out.write_bytes(final)
        tmp_out.replace(out)
    if verbose:
        print(
            f"exported {out} ({out.stat().st_size / 1e6:.2f} MB, MediaPipe {graph.kind.replace('_', ' ')}, "
            f"input {h}x{w}): {summary}"
        )
    return out


def _trained_on(ckpt: dict) -> str | None:
    """The dataset the checkpoint was trained on, so ``val`` with the file finds it as it does with the .pt."""
    data = (ckpt.get("train_args") or {}).get("data") or ckpt.get("data")
    return str(data) if data is not None else None


def _with_metadata(model: bytes, record: dict[str, Any], kind) -> bytes:
    return kind.write_metadata(metadata.add_record(model, record), record["names"])


def verify(graph, kind, path: Path, record: dict[str, Any], images: list[np.ndarray]) -> list[str]:
    """What differs between MediaPipe running ``path`` and PyTorch running ``graph`` on ``images`` (RGB uint8 at
    the input size); empty when the file is right. ``kind`` is the graph's MediaPipe facet."""
    from visionkit.runtime.mediapipe_backend import TaskRunner

    file_metadata = record.get("metadata") or {}
    runner = TaskRunner(path, kind, record["names"], *kind.runner_options(file_metadata))
    problems = []
    try:
        for i, img in enumerate(images):
            got = runner.run(img)
            with torch.no_grad():
                ref = graph(torch.from_numpy(img).float()[None] / 255)
            problems += [f"image {i}: {p}" for p in kind.compare(got, ref, img.shape[:2], file_metadata)]
    finally:
        runner.close()
    return problems


def _as_input(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0)[None]


def _noise_images(h: int, w: int) -> list[np.ndarray]:
    """Check images when no dataset is known: smooth random blobs (pure noise gives a trained model nothing to
    respond to)."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(N_CHECK_IMAGES):
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        images.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return images


def _images(task, args: Settings, ckpt: dict, split: str, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Up to ``n`` RGB uint8 images at (h, w) (stretched, as MediaPipe feeds them): from ``source=`` when given,
    else from ``split`` of ``data=`` (or the data the checkpoint was trained on). Empty when neither is found."""
    files = source_files(args.source)
    if not files:
        files = split_files(task, args, ckpt, split, n)
    h, w = size
    images = []
    for path in files[:n]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(np.ascontiguousarray(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1]))
    return images

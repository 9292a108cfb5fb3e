"""Export a checkpoint to a .tflite file that MediaPipe Tasks load unchanged, then check it the way the ONNX
exporter checks its files: MediaPipe runs the written file on sample images and its results are compared with
PyTorch's. A mismatch fails the export and leaves the file as ``*.failed.tflite``.

Checks (float files): classifier top-5 classes equal and scores within 1e-3; segmenter category masks equal to
PyTorch's argmax on >= 99.9 % of pixels; value maps (depth) within 1e-3 relative; detector the same detections
(class, score within 1e-3, box within 1 px) at the same NMS threshold. fp16 and int8 files are compared with the
float file on the validation split instead (size and metric change are printed)."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.edge import convert, metadata
from visionkit.edge.graphs import EdgeInput
from visionkit.engine.exporter import ExportError
from visionkit.errors import DataError, UsageError
from visionkit.limits import MAX_IMGSZ

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


def export_mediapipe(net: torch.nn.Module, task, ckpt: dict, args: Settings, out: Path) -> Path:
    """Write ``out`` (.tflite with MediaPipe metadata), check it with MediaPipe Tasks; returns the path."""
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
    float_file = _with_metadata(float_model, record, graph, task)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.tflite"
        float_path.write_bytes(float_file)
        problems = verify(graph, float_path, record, check_images)
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
            final = _with_metadata(small, {**record, "precision": precision}, graph, task)
            small_path = Path(tmp) / "small.tflite"
            small_path.write_bytes(final)
            summary += f"; {precision}: {len(final) / 1e6:.2f} MB vs {len(float_file) / 1e6:.2f} MB float"
            change = _metric_change(float_path, small_path, task, args, ckpt)
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


def _with_metadata(model: bytes, record: dict[str, Any], graph, task) -> bytes:
    model = metadata.add_record(model, record)
    names = record["names"]
    if graph.kind == "classifier":
        return metadata.write_classifier(model, names)
    if graph.kind == "segmenter":
        return metadata.write_segmenter(model, names, "SOFTMAX")
    if graph.kind == "value_map":
        return metadata.write_segmenter(model, None, "NONE")
    if graph.kind == "detector":
        boxes = _output_shapes(model)[0][1]
        return metadata.write_detector(model, names, boxes)
    if graph.kind == "detector_nms":
        return metadata.write_detector_nms(model, names, _detector_output_order(model))
    raise ExportError(f"task '{task.name}' made a graph of unknown kind '{graph.kind}'")


def _output_shapes(model: bytes) -> list[list[int]]:
    from ai_edge_litert import interpreter as tfl

    return [[int(d) for d in o["shape"]] for o in tfl.Interpreter(model_content=model).get_output_details()]


def _detector_output_order(model: bytes) -> list[str]:
    """What each output of a post-processing-layout detector holds, by output position. The graph returns boxes,
    classes, scores, count; this checks the converted file kept that order (by shape), rather than trusting it."""
    shapes = _output_shapes(model)
    expected = [("location", 3), ("category", 2), ("score", 2), ("count", 1)]
    if len(shapes) != 4 or [len(s) for s in shapes] != [r for _, r in expected] or shapes[0][-1] != 4:
        raise ExportError(
            f"the converted detector has outputs {shapes}; expected boxes (1, K, 4), classes (1, K), "
            f"scores (1, K), count (1)"
        )
    return [name for name, _ in expected]


def verify(graph, path: Path, record: dict[str, Any], images: list[np.ndarray]) -> list[str]:
    """What differs between MediaPipe running ``path`` and PyTorch running ``graph`` on ``images`` (RGB uint8 at
    the input size); empty when the file is right."""
    from visionkit.runtime.mediapipe_backend import MEDIAPIPE_NMS_IOU, TaskRunner

    kind = graph.kind
    nms = json.loads((record.get("metadata") or {}).get("nms", "null") or "null")
    conf = nms["conf"] if nms else 0.05
    max_det = nms["max_det"] if nms else 100
    runner = TaskRunner(path, kind, record["names"], score_threshold=conf, max_results=max_det)
    problems = []
    try:
        for i, img in enumerate(images):
            got = runner.run(img)
            with torch.no_grad():
                ref = graph(torch.from_numpy(img).float()[None] / 255)
            problems += [
                f"image {i}: {p}" for p in _compare(kind, got, ref, img.shape[:2], conf, max_det, MEDIAPIPE_NMS_IOU)
            ]
    finally:
        runner.close()
    return problems


def _compare(kind: str, got: dict, ref, size: tuple[int, int], conf: float, max_det: int, mp_iou: float) -> list[str]:
    if kind == "classifier":
        probs = ref[0].numpy()
        k = min(5, len(probs))
        want, have = np.argsort(-probs, kind="stable")[:k], np.argsort(-got["probs"], kind="stable")[:k]
        problems = []
        diff = float(np.abs(got["probs"] - probs).max())
        if diff > 1e-3:
            problems.append(f"class scores differ by {diff:.2g} (> 1e-3)")
        # near-equal scores may swap places: compare the classes whose scores are not tied with a neighbour
        if not np.array_equal(want, have) and not np.allclose(probs[want], probs[have], atol=1e-3):
            problems.append(f"top-{k} classes {have.tolist()} instead of {want.tolist()}")
        return problems
    if kind == "segmenter":
        agree = float((got["classes"] == ref[0].numpy().argmax(-1)).mean())
        return [] if agree >= 0.999 else [f"category mask agrees with PyTorch's argmax on {agree:.2%} of pixels"]
    if kind == "value_map":
        want = ref[0, ..., 0].numpy()
        diff = float(np.abs(got["values"] - want).max()) / max(float(np.abs(want).max()), 1e-12)
        return [] if diff <= 1e-3 else [f"values differ by {diff:.2g} relative (> 1e-3)"]
    h, w = size
    scale = torch.tensor([h, w, h, w], dtype=torch.float32)
    if kind == "detector_nms":
        boxes, classes, scores, count = (t[0] for t in ref)
        n = int(count.reshape(-1)[0])
        ymin, xmin, ymax, xmax = (boxes[:n] * scale).unbind(-1)
        want = torch.stack([xmin, ymin, xmax, ymax, scores[:n], classes[:n]], -1)
    else:
        from torchvision.ops import nms as tv_nms

        yxhw, scores = ref[0][0], ref[1][0]
        yc, xc, bh, bw = (yxhw * scale).unbind(-1)
        corners = torch.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], -1)
        best, label = scores.max(-1)
        keep = best > conf
        corners, best, label = corners[keep], best[keep], label[keep]
        kept = tv_nms(corners, best, mp_iou)[:max_det]
        want = torch.cat([corners[kept], best[kept, None], label[kept, None].float()], 1)
    return _detections_differ(torch.from_numpy(got["rows"]), want, conf)


def _detections_differ(got: torch.Tensor, want: torch.Tensor, conf: float) -> list[str]:
    """MediaPipe's detections against PyTorch's: each matched to its nearest, the same class, the score within
    1e-3, the box's origin and size within 1 px (MediaPipe truncates both to whole pixels). Detections whose
    score is within 1e-3 of the threshold may be on either side of it."""

    def firm(rows):
        return rows[rows[:, 4] > conf + 1e-3]

    got, want = firm(got[got[:, 4].argsort(descending=True)]), firm(want[want[:, 4].argsort(descending=True)])
    if len(got) != len(want):
        return [f"{len(got)} detection(s) instead of {len(want)}"]
    if not len(got):
        return []
    got, want = _origin_size(got), _origin_size(want)
    # match each to its nearest of the same class (one box may be kept under two classes; ties may reorder)
    box_cost = (got[:, None, :4] - want[None, :, :4]).abs().amax(-1)
    other_class = got[:, None, 5] != want[None, :, 5]
    nearest = (box_cost + 1e6 * other_class + 1e3 * (got[:, None, 4] - want[None, :, 4]).abs()).argmin(1)
    problems = []
    box = float(box_cost.gather(1, nearest[:, None]).max())
    if box > 1.0 + 1e-3:
        problems.append(f"a box differs by {box:.2f} px (> 1 px)")
    if bool(other_class.gather(1, nearest[:, None]).any()):
        problems.append("a detection has another class")
    score = float((got[:, 4] - want[nearest, 4]).abs().max())
    if score > 1e-3:
        problems.append(f"a score differs by {score:.2g} (> 1e-3)")
    return problems


def _origin_size(rows: torch.Tensor) -> torch.Tensor:
    """x1 y1 x2 y2 → x y w h, MediaPipe's form of a box."""
    return torch.cat([rows[:, :2], rows[:, 2:4] - rows[:, :2], rows[:, 4:]], 1)


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
    files = _source_files(args.source)
    if not files:
        files = _split_files(task, args, ckpt, split)
    h, w = size
    images = []
    for path in files[:n]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(np.ascontiguousarray(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1]))
    return images


def _source_files(source) -> list[Path]:
    if not source:
        return []
    from visionkit.engine.predictor import is_video, resolve_sources

    return [p for p in resolve_sources(source) if isinstance(p, Path) and not is_video(p)]


def _split_files(task, args: Settings, ckpt: dict, split: str) -> list[Path]:
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
    step = max(1, len(files) // N_CALIBRATION_IMAGES)  # spread the picks over the split
    return files[::step]


def _metric_change(float_path: Path, small_path: Path, task, args: Settings, ckpt: dict) -> str:
    """'<metric> a → b (+d)' of the float and the compressed file on the validation split; '' without data."""
    from visionkit.api import Model

    trained = ckpt.get("train_args", {}) or {}
    data = args.data or trained.get("data") or ckpt.get("data")
    if not data:
        return ""
    scores, key = [], None
    for path in (float_path, small_path):
        m = Model(str(path), task=task.name)
        overrides = {
            "data": data,
            "verbose": False,
            "plots": False,
            "batch": 8,
            "workers": 0,
            "project": str(float_path.parent / "val"),
        }
        for key in ("root", "datasets_dir"):
            value = args[key] if args[key] is not None else trained.get(key)
            if value is not None:
                overrides[key] = value
        try:
            scores.append(m.val(**overrides))
            key = m.val_metrics.fitness_key
        except (DataError, UsageError):
            return ""
        finally:
            m.net.close()
    a, b = scores[0].get(key), scores[1].get(key)
    if a is None or b is None:
        return ""
    return f"val {key} {a:.4f} (float) → {b:.4f} ({b - a:+.4f})"

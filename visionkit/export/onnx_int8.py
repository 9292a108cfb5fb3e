"""int8 ONNX files: static post-training quantisation of the checked float file with onnxruntime's own tools (QDQ
format; int8 weights, one scale per output channel; int8 activations whose ranges are calibrated on the model's own
images, prepared as predict prepares them; the stem that reads the image, the last weighted layers and the decoding
after them stay float, see ``float_ends``), written beside the float file as ``<name>_int8.onnx``.

An int8 file cannot match PyTorch to 1e-3, so it is judged by what it is for: the task's metric on the validation
split against the float file's (when the data is known), and its latency against the float file's (batch as
exported, warm-up then the median of repeated calls, onnxruntime's default threads). Both are printed and kept in
the file's metadata (``precision``, ``calibration_images``, ``int8_metric_change``, ``latency_ms``, and
``latency_cpu``: the CPU they were measured on, since the int8 gain depends on its instructions, see
visionkit.engine.cpu_features)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from visionkit.cfg import Settings
from visionkit.engine.cpu_features import CpuFeatures, cpu_features
from visionkit.errors import ExportError, UsageError
from visionkit.export.samples import metric_change, source_files, split_files

MAX_CALIBRATION_IMAGES = 256  # min/max ranges settle long before this; more only slows the export
LATENCY_CALLS = 20


def int8_path(float_path: Path) -> Path:
    return float_path.with_name(f"{float_path.stem}_int8.onnx")


def calibration_files(task, args: Settings, ckpt: dict) -> list[Path]:
    """``source=`` images, else ``fraction`` of the train split (all of it by default), at most
    MAX_CALIBRATION_IMAGES, spread over it."""
    files = source_files(args.source)
    if not files:
        files = split_files(task, args, ckpt, "train", 10**9)
    fraction = float(args.fraction) if args.fraction is not None else 1.0
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"bad value fraction={args.fraction!r}: the share of images to calibrate on, in (0, 1]")
    n = min(MAX_CALIBRATION_IMAGES, max(1, math.ceil(fraction * len(files))))
    step = max(1, len(files) // n)
    return files[::step][:n]


class CalibrationBatches:
    """onnxruntime's CalibrationDataReader protocol: ``get_next()`` → {"images": batch} or None at the end."""

    def __init__(self, task, files: list[Path], meta: dict):
        self.task, self.meta = task, meta
        batch = int(meta["batch"])
        # a fixed-batch file takes exactly `batch` images per call: the last group is filled up from the first
        groups = [files[i : i + batch] for i in range(0, len(files), batch)]
        if groups and len(groups[-1]) < batch:
            groups[-1] = (groups[-1] + files * batch)[:batch]
        self.groups = iter(groups)

    def get_next(self):
        group = next(self.groups, None)
        if group is None:
            return None
        m = self.meta
        x, _ = self.task.load_inputs(group, m["imgsz"], m["in_channels"], m["mean"], m["std"], rect=False)
        return {"images": x.numpy().astype(np.float32)}

    def rewind(self):  # not needed for MinMax calibration (one pass)
        raise NotImplementedError


def input_meta(props: dict[str, str]) -> dict:
    """What calibration and timing need from a file's visionkit metadata: input size, channels, normalisation."""
    return {
        "imgsz": int(props["imgsz"]),
        "in_channels": int(props["in_channels"]),
        "mean": json.loads(props["mean"]),
        "std": json.loads(props["std"]),
        "batch": int(props.get("batch", 1)),
    }


def int8_record(files: list[Path], change: str, latency: dict[str, float]) -> dict[str, str]:
    """The metadata an int8 file carries about how it was made and judged."""
    return {
        "precision": "int8",
        "calibration_images": str(len(files)),
        "int8_metric_change": change,
        "latency_ms": json.dumps({k: round(v, 3) for k, v in latency.items()}),
        "latency_cpu": cpu_features().describe(),
    }


SLOW_INT8 = 0.8  # int8 / float latency above which the export explains why int8 bought little


def speed_note(latency: dict[str, float], cpu: CpuFeatures | None = None) -> str:
    """A line for the export's output when the int8 file is not much faster than the float one ("" otherwise):
    without an int8 dot-product instruction the CPU is the reason, and keeping the float file is the advice."""
    ratio = latency["int8"] / latency["float"]
    if ratio <= SLOW_INT8:
        return ""
    cpu = cpu or cpu_features()
    if cpu.int8_dot is None:
        return (
            f"note: int8 runs at ×{ratio:.2f} of float here because this CPU, {cpu.describe()}, multiplies int8 "
            "no faster than float; the int8 file is smaller, not faster, on it. Deploy the float file on such "
            "CPUs; int8 pays on CPUs with AVX-512 VNNI, AVX-VNNI, AMX or ARM's dot product (docs/export.md)"
        )
    return (
        f"note: int8 runs at ×{ratio:.2f} of float on this CPU ({cpu.describe()}): small convolutions (under 16 "
        "channels) and SiLU activations gain little in int8; act=relu and wider layers quantise better "
        "(docs/export.md)"
    )


def quantize_onnx(float_path: Path, task, ckpt: dict, args: Settings, score_file=None) -> Path:
    """Write and judge ``<float>_int8.onnx`` from the checked float file; returns its path."""
    import onnx

    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as e:  # an onnxruntime build without its quantisation tools
        raise UsageError(f"int8=True needs onnxruntime's quantization tools ({e}); pip install onnxruntime") from e
    files = calibration_files(task, args, ckpt)
    if not files:
        raise UsageError(
            "int8=True calibrates on real images: pass data= (a dataset with a train split) or source= (a folder "
            "of images like those the model will see)"
        )
    float_model = onnx.load(str(float_path), load_external_data=False)
    props = {p.key: p.value for p in float_model.metadata_props}
    meta = input_meta(props)
    out = int8_path(float_path)
    with tempfile.TemporaryDirectory(prefix="vk-int8-", dir=out.parent) as tmp:
        quantized = Path(tmp) / out.name
        prepared = _prepared(float_path, Path(tmp) / "prepared.onnx")
        try:
            with _quiet_root_logger():  # the quantiser's notes (a rank-1 constant has no channel axis) go to root
                quantize_static(
                    str(prepared),
                    str(quantized),
                    CalibrationBatches(task, files, meta),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,  # u8 activations, s8 weights: x86's fast int8 path
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=float_ends(onnx.load(str(prepared), load_external_data=False)),
                )
        except Exception as e:
            raise ExportError(f"onnxruntime could not quantise '{float_path}': {type(e).__name__}: {e}") from e
        latency = {"float": _latency(float_path, meta), "int8": _latency(quantized, meta)}
        change = metric_change(float_path, quantized, args, ckpt, score_file) if score_file else ""
        model = onnx.load(str(quantized))
        del model.metadata_props[:]
        for k, v in {**props, **int8_record(files, change, latency)}.items():
            model.metadata_props.add(key=k, value=v)
        onnx.save(model, str(quantized))
        shutil.move(str(quantized), str(out))  # same folder: a rename, never a half-written file at `out`
    if args.verbose:
        size = f"{out.stat().st_size / 1e6:.1f} MB vs {float_path.stat().st_size / 1e6:.1f} MB float"
        speed = (
            f"latency (batch {meta['batch']}, median of {LATENCY_CALLS}) {latency['int8']:.1f} ms vs "
            f"{latency['float']:.1f} ms float (×{latency['int8'] / latency['float']:.2f})"
        )
        print(
            f"exported {out} ({size}): int8 calibrated on {len(files)} image(s); {speed}"
            + (f"; {change}" if change else "; no validation data, so no metric change (pass data=)")
        )
        if note := speed_note(latency):
            print(note)
    return out


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def float_tail(model) -> list[str]:
    """The nodes kept in float: the last weighted layers (no weighted layer after them) and everything after them.
    These are the raw outputs (box distances, logits, depth) and their decoding: a uint8 grid over a box distance's
    whole range moves a box by pixels, while the layers are a sliver of the compute. The body stays int8."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    feeds_weighted = [False] * len(nodes)  # a weighted layer lies downstream of the node's outputs
    for i in reversed(range(len(nodes))):  # ONNX lists nodes in topological order: consumers come later
        feeds_weighted[i] = any(
            nodes[j].op_type in WEIGHTED_OPS or feeds_weighted[j]
            for out in nodes[i].output
            for j in consumers.get(out, [])
        )
    return [node.name for node, feeds in zip(nodes, feeds_weighted) if node.name and not feeds]


def float_stem(model) -> list[str]:
    """The nodes kept in float at the input: the first weighted layers (no weighted layer before them) and what
    leads to them. They read the image itself, a handful of channels at full size: int8 kernels are slow there
    (onnxruntime's int8 stem conv took twice its float time, plus quantising the image), and the image's ranges
    are where one scale per tensor loses most."""
    nodes = list(model.graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    after_weighted = [False] * len(nodes)  # a weighted layer lies upstream of the node's inputs
    for i, node in enumerate(nodes):  # topological order: producers come first
        after_weighted[i] = any(
            nodes[j].op_type in WEIGHTED_OPS or after_weighted[j]
            for name in node.input
            if (j := producer.get(name)) is not None
        )
    reads_input = _reachable_from({i.name for i in model.graph.input}, nodes)
    return [node.name for i, node in enumerate(nodes) if node.name and not after_weighted[i] and reads_input[i]]


def _reachable_from(names: set[str], nodes) -> list[bool]:
    """Per node: whether one of ``names`` (graph inputs) flows into it."""
    live, out = set(names), []
    for node in nodes:
        hit = any(name in live for name in node.input)
        if hit:
            live.update(node.output)
        out.append(hit)
    return out


def float_ends(model) -> list[str]:
    """The nodes int8 files keep in float: the stem (``float_stem``) and the tail (``float_tail``)."""
    return float_stem(model) + float_tail(model)


def _prepared(float_path: Path, out: Path) -> Path:
    """The float file with shapes inferred and the graph optimised, as onnxruntime's quantiser advises; the file
    itself when that step fails (it is an optimisation, not a requirement)."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(float_path), str(out))
        return out
    except Exception:
        return float_path


def _latency(path: Path, meta: dict) -> float:
    """Median milliseconds of one call at the file's batch size, after warm-up."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((meta["batch"], meta["in_channels"], meta["imgsz"], meta["imgsz"]))
    feed = {"images": x.astype(np.float32)}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)

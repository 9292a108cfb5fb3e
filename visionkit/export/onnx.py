"""Export a checkpoint to ONNX through the task's export wrapper, then check the file: onnx.checker, and
onnxruntime against PyTorch on a sample input (the difference is printed; above ``export_tol`` the file is moved
aside and the export fails). The difference is max |ORT - PyTorch| / max(1, max |PyTorch|) per output: absolute
for scores and logits, relative for outputs in pixels (a box coordinate of 600 carries fp16's 0.25 px steps)."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.engine.diskfull import disk_full_guard
from visionkit.errors import ExportError, UsageError
from visionkit.registry import register


def export_onnx(
    net: torch.nn.Module, task, ckpt: dict, args: Settings, out: Path, batch: int = 1, score_file=None
) -> Path:
    """Write ``out`` (.onnx) with a fixed ``batch`` (unless ``args.dynamic``) and verify it; returns the path. With
    ``int8``, also its quantised copy ``<name>_int8.onnx`` (returned instead), judged with ``score_file``."""
    if args.int8 and args.half:
        raise UsageError("half=True and int8=True are two ways to shrink the file; pick one")
    # a full disk is one error naming the file; the half-written temporary is removed below
    with disk_full_guard(out.parent, "export", "Free some space and export again; no file was written", file=out):
        path = _export_onnx(net, task, ckpt, args, out, batch)
        if args.int8:
            from visionkit.export.onnx_int8 import quantize_onnx

            return quantize_onnx(path, task, ckpt, args, score_file)
        return path


def _export_onnx(net: torch.nn.Module, task, ckpt: dict, args: Settings, out: Path, batch: int) -> Path:
    import onnx

    stride = net.stride
    imgsz = int(args.imgsz or ckpt["imgsz"])
    if imgsz % stride:
        rounded = math.ceil(imgsz / stride) * stride
        warnings.warn(
            f"imgsz={imgsz} is not a multiple of the model stride {stride}; exporting at {rounded}", stacklevel=2
        )
        imgsz = rounded
    dynamic = bool(args.dynamic)
    tol = _tolerance(args)
    device = torch.device("cpu")
    if args.half:
        if not torch.cuda.is_available():
            raise UsageError("half=True exports fp16 and needs CUDA; on CPU export fp32 (half=False)")
        device = torch.device("cuda:0")
    net = net.to(device).eval().float()
    wrapper = task.export_wrapper(net, args).to(device).eval()
    channels = int(ckpt["in_channels"])
    sample = torch.rand(batch, channels, imgsz, imgsz, device=device)
    if args.half:
        wrapper, sample = wrapper.half(), sample.half()
    names_out = list(wrapper.output_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    try:  # a failed export leaves no half-written file behind
        _trace(wrapper, sample, tmp, args)
        model = onnx.load(str(tmp))
        if args.simplify:
            model = _simplify(model)
        meta = {
            "task": ckpt["task"],
            "names": json.dumps(ckpt["names"]),
            "imgsz": str(imgsz),
            "stride": str(stride),
            "in_channels": str(channels),
            "mean": json.dumps(list(ckpt["mean"])),
            "std": json.dumps(list(ckpt["std"])),
            "channel_order": "RGB" if channels == 3 else "GRAY",
            "input": "float (B, C, H, W), normalised: (x/255 - mean) / std",
            "outputs": json.dumps(names_out),
            "layout": wrapper.layout,
            "dynamic": str(dynamic),
            "batch": str(batch),
            **getattr(wrapper, "metadata", {}),
            "visionkit_version": ckpt.get("versions", {}).get("visionkit", ""),
            "model_config": json.dumps(ckpt["model_config"]),
        }
        del model.metadata_props[:]
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        diff, problems = _check(wrapper, tmp, sample, stride, args)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if problems:
        failed = out.with_suffix(".failed.onnx")
        tmp.replace(failed)
        raise ExportError(
            f"the exported file's outputs are wrong: {'; '.join(problems[:3])}; the file is kept at "
            f"{failed} for inspection"
        )
    if not diff <= tol:
        failed = out.with_suffix(".failed.onnx")
        tmp.replace(failed)
        raise ExportError(
            f"onnxruntime differs from PyTorch by {diff:.3g} (> export_tol={tol:g}); the file is kept at "
            f"{failed} for inspection"
        )
    tmp.replace(out)
    if args.verbose:
        print(
            f"exported {out} ({out.stat().st_size / 1e6:.1f} MB): onnx.checker passed, onnxruntime vs PyTorch "
            f"difference {diff:.2e} (max |diff| / max(1, max |output|); tolerance {tol:g})"
            + (f"; {wrapper.summary}" if getattr(wrapper, "summary", None) else "")
        )
    return out


def _tolerance(args) -> float:
    tol = args.export_tol
    if tol is None:
        return 1e-2 if args.half else 1e-3  # fp16 carries ~3 significant digits
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise UsageError(f"bad value export_tol={tol!r}: expected a number such as 0.001")
    return float(tol)


def _trace(wrapper, sample: torch.Tensor, path: Path, args) -> None:
    # torch.onnx.export restores the wrapper's training flag afterwards, recursively: a wrapper left in train
    # mode would switch the shared network's BatchNorm to batch statistics
    wrapper.eval()
    axes = None
    if args.dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, **getattr(wrapper, "dynamic_output_axes", {})}
    opset = args.opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        # into memory, then written from Python: a full disk is then an OSError(ENOSPC), not a C++ error
        buffer = io.BytesIO()
        try:
            torch.onnx.export(
                wrapper,
                (sample,),
                buffer,
                dynamo=False,
                input_names=["images"],
                output_names=list(wrapper.output_names),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        except Exception as e:
            raise ExportError(
                f"torch.onnx.export failed at opset {opset}: {str(e).splitlines()[0]} (the default "
                f"opset=17 supports every visionkit model)"
            ) from e
    path.write_bytes(buffer.getvalue())


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(wrapper, path: Path, sample: torch.Tensor, stride: int, args) -> tuple[float, list[str]]:
    """Largest scaled difference between PyTorch and onnxruntime on the sample (and, when dynamic, on another batch
    size and a non-square image of another size), and any problems found.

    A wrapper with a discrete last stage (NMS) offers ``check_split() -> (network, verify)``: near-equal scores
    may legitimately flip a selection between two runtimes (often in fp16), so the network is compared
    numerically through its own export, and ``verify(network outputs, file outputs)`` lists what makes the file's
    outputs wrong for onnxruntime's own network outputs."""
    samples = [sample]
    if args.dynamic:
        b, c, h, w = sample.shape
        samples.append(torch.rand(b + 2, c, h + stride, w, dtype=sample.dtype, device=sample.device))
    session = _session(path)
    split = getattr(wrapper, "check_split", None)
    if split is None:
        return max(_difference(_torch_run(wrapper, x), _ort_run(session, x)) for x in samples), []
    network, verify = split()
    network_path = path.with_suffix(".network.tmp")
    try:
        _trace(network, sample, network_path, args)
        network_session = _session(network_path)
        worst, problems = 0.0, []
        for x in samples:
            ort_network = _ort_run(network_session, x)
            worst = max(worst, _difference(_torch_run(network, x), ort_network))
            problems += [f"input {tuple(x.shape)}: {p}" for p in verify(ort_network, _ort_run(session, x))]
        return worst, problems
    finally:
        network_path.unlink(missing_ok=True)


def _torch_run(module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(x)
    return [o.float().cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def _ort_run(session, x: torch.Tensor) -> list[np.ndarray]:
    return session.run(None, {"images": x.cpu().numpy()})


def _difference(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """max |got - ref| / max(1, max |ref|) over the outputs; inf when shapes differ."""
    worst = 0.0
    for r, g in zip(ref, got):
        r, g = np.asarray(r, np.float32), np.asarray(g).astype(np.float32)
        if r.shape != g.shape:
            return float("inf")
        if r.size:
            worst = max(worst, float(np.abs(r - g).max()) / max(1.0, float(np.abs(r).max())))
    return worst


def _simplify(model):
    try:
        import onnxslim

        return onnxslim.slim(model)
    except ImportError:
        pass
    try:
        from onnxsim import simplify

        simplified, ok = simplify(model)
        return simplified if ok else model
    except ImportError:
        warnings.warn(
            "simplify=True needs onnxslim or onnxsim (pip install 'visionkit[export]'); exporting "
            "without simplification",
            stacklevel=3,
        )
        return model


@register("export_format", "onnx")
class OnnxWriter:
    """format=onnx: a file onnxruntime runs (batch= is the file's batch, 1 by default, not training's)."""

    suffix = ".onnx"
    size_pair = False  # imgsz is one size
    defaults = {"batch": 1}  # the file's batch when batch= is not given (training's 64 means nothing here)

    def write(self, net, task, ckpt: dict, args: Settings, out: Path, score_file) -> Path:
        return export_onnx(net, task, ckpt, args, out, batch=int(args.batch), score_file=score_file)

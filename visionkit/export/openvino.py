"""Export a checkpoint to OpenVINO's IR (``best.xml`` with its weights in ``best.bin``), the format Intel-CPU users
deploy: the checked ONNX file (export/onnx.py) is converted by OpenVINO's own converter, the visionkit metadata is
kept in the model's runtime info (``visionkit`` section: the same keys as the ONNX metadata), and OpenVINO's CPU
runtime runs the written file against PyTorch on the sample input before it is kept (the same scaled difference
and ``export_tol`` as ONNX). A failed check leaves ``best.failed.xml`` for inspection; no half-written file stays."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.errors import ExportError, UsageError
from visionkit.registry import register
from visionkit.runtime.openvino_backend import CPU_CONFIG, RT_SECTION


def require_openvino():
    try:
        import openvino

        return openvino
    except ImportError as e:
        raise UsageError(f"format=openvino needs OpenVINO ({e}): pip install 'visionkit[openvino]'") from None


def export_openvino(
    net: torch.nn.Module, task, ckpt: dict, args: Settings, out: Path, batch: int = 1, score_file=None
) -> Path:
    """Write ``out`` (.xml + .bin) from the checked ONNX export and check it with OpenVINO; returns the path, or
    with ``int8`` that of its quantised copy ``<name>_int8.xml``, judged with ``score_file``."""
    import onnx

    from visionkit.export.onnx import _difference, _tolerance, _torch_run, export_onnx

    ov = require_openvino()
    if args.half:
        raise UsageError(
            "format=openvino writes fp32 (or int8=True) files; half= is not supported for it (OpenVINO compresses "
            "fp32 weights on the fly at run time on CPUs that gain from it)"
        )
    if args.int8:
        from visionkit.export.openvino_int8 import require_nncf

        require_nncf()  # before the float export, not after it
    with tempfile.TemporaryDirectory(prefix="vk-openvino-", dir=out.parent) as tmp:
        float_args = args.replace(verbose=False, int8=False)  # the fp32 IR first; NNCF quantises it below
        onnx_path = export_onnx(net, task, ckpt, float_args, Path(tmp) / f"{out.stem}.onnx", batch)
        props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as e:
            raise ExportError(f"OpenVINO could not convert the ONNX file: {type(e).__name__}: {e}") from e
        for key, value in {**props, "source_format": "onnx"}.items():
            model.set_rt_info(value, [RT_SECTION, key])
        written = Path(tmp) / out.name
        ov.save_model(model, str(written), compress_to_fp16=False)
        sample = _sample(props, args, batch)
        wrapper = task.export_wrapper(net.cpu().eval().float(), args).eval()
        got = run_compiled(ov, written, sample)
        split = getattr(wrapper, "check_split", None)
        if split is None:
            diff, problems = _difference(_torch_run(wrapper, sample), got), []
        else:  # a discrete last stage (NMS): the file's table must be a right answer for the network's outputs
            network, verify = split()
            diff, problems = 0.0, verify(_torch_run(network, sample), got)
        tol = _tolerance(args)
        if problems:
            failed = out.with_suffix(".failed.xml")
            _move(written, failed)
            raise ExportError(f"OpenVINO's outputs are wrong: {'; '.join(problems[:3])}; the file is kept at {failed}")
        if not diff <= tol:
            failed = out.with_suffix(".failed.xml")
            _move(written, failed)
            raise ExportError(
                f"OpenVINO differs from PyTorch by {diff:.3g} (> export_tol={tol:g}); the file is kept at {failed}"
            )
        _move(written, out)
    if args.verbose:
        size = (out.stat().st_size + out.with_suffix(".bin").stat().st_size) / 1e6
        print(
            f"exported {out} (+ {out.with_suffix('.bin').name}, {size:.1f} MB): OpenVINO {ov.__version__} CPU vs "
            f"PyTorch difference {diff:.2e} (max |diff| / max(1, max |output|); tolerance {tol:g})"
        )
    if args.int8:
        from visionkit.export.openvino_int8 import quantize_openvino

        return quantize_openvino(out, task, ckpt, args, score_file)
    return out


def _sample(props: dict[str, str], args: Settings, batch: int) -> torch.Tensor:
    imgsz, channels = int(props["imgsz"]), int(props["in_channels"])
    return torch.rand(batch, channels, imgsz, imgsz, generator=torch.Generator().manual_seed(0))


def run_compiled(ov, path: Path, x: torch.Tensor) -> list[np.ndarray]:
    compiled = ov.Core().compile_model(str(path), "CPU", CPU_CONFIG)
    result = compiled(x.cpu().numpy().astype(np.float32))
    return [np.asarray(result[o]) for o in compiled.outputs]


def _move(xml: Path, to: Path) -> None:
    """The .xml and its .bin, each by rename (same folder tree): never a half-written pair at ``to``."""
    shutil.move(str(xml.with_suffix(".bin")), str(to.with_suffix(".bin")))
    shutil.move(str(xml), str(to))


@register("export_format", "openvino")
class OpenVinoWriter:
    """format=openvino: OpenVINO IR (.xml + .bin) for OpenVINO's runtime (Intel CPUs, GPUs and NPUs)."""

    suffix = ".xml"
    size_pair = False
    defaults = {"batch": 1}

    def write(self, net, task, ckpt: dict, args: Settings, out: Path, score_file) -> Path:
        return export_openvino(net, task, ckpt, args, out, batch=int(args.batch), score_file=score_file)

"""int8 OpenVINO files: post-training quantisation of the checked fp32 IR with NNCF (OpenVINO's own compression
tool, Apache-2.0), calibrated on the model's own images prepared as predict prepares them (the same images and
loader as int8 ONNX files), written beside the float file as ``<name>_int8.xml`` (+ ``.bin``).

Judged as int8 ONNX files are: the task's metric on the validation split against the float file's (when the data
is known) and OpenVINO's latency against the float file's, both printed and kept in the file's runtime info
(``precision``, ``calibration_images``, ``int8_metric_change``, ``latency_ms``, ``latency_cpu``)."""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from visionkit.cfg import Settings
from visionkit.errors import ExportError, UsageError
from visionkit.export.onnx_int8 import (
    LATENCY_CALLS,
    CalibrationBatches,
    calibration_files,
    input_meta,
    int8_path,
    int8_record,
    speed_note,
)
from visionkit.export.samples import metric_change
from visionkit.runtime.openvino_backend import CPU_CONFIG, RT_SECTION, file_metadata


def require_nncf():
    try:
        import nncf

        return nncf
    except ImportError as e:
        raise UsageError(
            f"format=openvino int8=True quantises with NNCF ({e}): pip install 'visionkit[openvino]'"
        ) from None


def quantize_openvino(float_path: Path, task, ckpt: dict, args: Settings, score_file=None) -> Path:
    """Write and judge ``<float>_int8.xml`` from the checked float IR; returns its path."""
    import openvino as ov

    nncf = require_nncf()
    files = calibration_files(task, args, ckpt)
    if not files:
        raise UsageError(
            "int8=True calibrates on real images: pass data= (a dataset with a train split) or source= (a folder "
            "of images like those the model will see)"
        )
    core = ov.Core()
    model = core.read_model(str(float_path))
    props = file_metadata(model)
    meta = input_meta(props)
    reader = CalibrationBatches(task, files, meta)
    batches = list(iter(lambda: reader.get_next(), None))
    out = float_path.with_name(int8_path(float_path).with_suffix(".xml").name)
    with tempfile.TemporaryDirectory(prefix="vk-openvino-int8-", dir=out.parent) as tmp:
        written = Path(tmp) / out.name
        try:
            with _quiet_nncf():
                quantized = nncf.quantize(
                    model,
                    nncf.Dataset(batches, lambda item: item["images"]),
                    subset_size=len(batches) * meta["batch"],
                )
        except Exception as e:
            raise ExportError(f"NNCF could not quantise '{float_path}': {type(e).__name__}: {e}") from e
        ov.save_model(quantized, str(written), compress_to_fp16=False)
        latency = {"float": _latency(core, float_path, meta), "int8": _latency(core, written, meta)}
        change = metric_change(float_path, written, args, ckpt, score_file) if score_file else ""
        final = core.read_model(str(written))
        for key, value in {**props, **int8_record(files, change, latency)}.items():
            final.set_rt_info(value, [RT_SECTION, key])
        tagged = Path(tmp) / "tagged" / out.name
        tagged.parent.mkdir()
        ov.save_model(final, str(tagged), compress_to_fp16=False)
        written = tagged
        _move(written, out)
    if args.verbose:
        size = out.stat().st_size + out.with_suffix(".bin").stat().st_size
        float_size = float_path.stat().st_size + float_path.with_suffix(".bin").stat().st_size
        speed = (
            f"OpenVINO latency (batch {meta['batch']}, median of {LATENCY_CALLS}) {latency['int8']:.1f} ms vs "
            f"{latency['float']:.1f} ms float (×{latency['int8'] / latency['float']:.2f})"
        )
        print(
            f"exported {out} ({size / 1e6:.1f} MB vs {float_size / 1e6:.1f} MB float): int8 (NNCF) calibrated on "
            f"{len(files)} image(s); {speed}"
            + (f"; {change}" if change else "; no validation data, so no metric change (pass data=)")
        )
        if note := speed_note(latency):
            print(note)
    return out


class _quiet_nncf:
    """NNCF logs its progress and notes at INFO; visionkit prints its own one-line summary."""

    def __enter__(self):
        self.logger = logging.getLogger("nncf")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _latency(core, path: Path, meta: dict) -> float:
    """Median milliseconds of one call at the file's batch size on OpenVINO's CPU runtime, after warm-up."""
    compiled = core.compile_model(str(path), "CPU", CPU_CONFIG)
    x = np.random.default_rng(0).random((meta["batch"], meta["in_channels"], meta["imgsz"], meta["imgsz"]))
    x = x.astype(np.float32)
    for _ in range(3):
        compiled(x)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        compiled(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _move(xml: Path, to: Path) -> None:
    """The .xml and its .bin, each by rename: never a half-written pair at ``to``."""
    shutil.move(str(xml.with_suffix(".bin")), str(to.with_suffix(".bin")))
    shutil.move(str(xml), str(to))

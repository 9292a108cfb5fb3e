"""An OpenVINO IR file (``best.xml`` + ``best.bin``) run by OpenVINO's CPU runtime, callable like the network it
came from: it takes the normalised (B, C, H, W) batch and returns the export wrapper's outputs, as the ONNX backend
does. The visionkit metadata is read from the model's runtime info (``visionkit`` section, the ONNX metadata's
keys), so the same checks and overrides apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import CheckpointError, UsageError
from visionkit.registry import register
from visionkit.runtime.base import ExportedModel
from visionkit.runtime.onnx_backend import OnnxModel

RT_SECTION = "visionkit"
# OpenVINO runs fp32 models in bf16 on CPUs with AMX unless told otherwise (differences of ~1e-3): files run in
# fp32, as the exporter checked them
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


@register("runtime", "openvino")
class OpenVinoModel(ExportedModel):
    """``OpenVinoModel("best.xml")(x)`` → the export wrapper's outputs; ``meta`` as the ONNX backend's."""

    suffix = ".xml"  # the files this backend runs

    def __init__(self, path: str | Path, overrides: dict[str, Any] | None = None):
        try:
            import openvino as ov
        except ImportError as e:
            raise UsageError(f"an OpenVINO file needs OpenVINO ({e}): pip install 'visionkit[openvino]'") from None
        path = Path(path)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            weights = path.with_suffix(".bin").name
            raise CheckpointError(f"OpenVINO file '{path}' (with its weights '{weights}' beside it) does not exist")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:
            raise CheckpointError(f"OpenVINO cannot read '{path}': {str(e).splitlines()[0]}") from e
        raw = file_metadata(model)
        try:
            self.meta = OnnxModel._meta(raw, overrides or {}, path)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"'{path}' has malformed visionkit metadata: {type(e).__name__}: {e}") from e
        shape = model.inputs[0].get_partial_shape()
        self.batch = shape[0].get_length() if shape[0].is_static else None
        self.fixed = all(d.is_static for d in list(shape)[2:])
        self.core, self.model, self.path = core, model, path
        self._compile(torch.get_num_threads())

    def _compile(self, threads: int) -> None:
        config = {**CPU_CONFIG, "INFERENCE_NUM_THREADS": threads}  # fp32, as the file was checked
        self.compiled = self.core.compile_model(self.model, "CPU", config)
        self.threads = threads

    @property
    def fixed_size(self) -> bool:
        return self.fixed

    def __call__(self, x: torch.Tensor):
        if torch.get_num_threads() != self.threads:  # threads= of predict, val and benchmark, as for ONNX files
            self._compile(torch.get_num_threads())
        x = x.detach().cpu().numpy().astype(np.float32)
        if self.batch is None or len(x) == self.batch:
            outs = self._run(x)
        else:  # a fixed-batch file: feed full chunks (the last one padded) and stitch the outputs together
            parts = []
            for i in range(0, len(x), self.batch):
                chunk = x[i : i + self.batch]
                n = len(chunk)
                if n < self.batch:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, 0)])
                parts.append([o[:n] for o in self._run(chunk)])
            outs = [np.concatenate(p) for p in zip(*parts)]
        outs = tuple(torch.from_numpy(np.ascontiguousarray(o)) for o in outs)
        return outs[0] if len(outs) == 1 else outs

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.compiled(x)
        return [np.asarray(result[o]) for o in self.compiled.outputs]


def file_metadata(model) -> dict[str, str]:
    """The ``visionkit`` runtime-info section as a dict of strings (empty for a file visionkit did not write)."""
    if not model.has_rt_info([RT_SECTION]):
        return {}
    section = model.get_rt_info()[RT_SECTION]
    out = {}
    for key in section:
        value = model.get_rt_info([RT_SECTION, key])
        out[str(key)] = value.astype(str) if hasattr(value, "astype") else str(value)
    return out

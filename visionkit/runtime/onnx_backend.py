"""An exported ONNX file run by onnxruntime, callable like the PyTorch network it came from: same input tensor
(pre-processing is shared), outputs as torch tensors for the task's post-processing. It knows no task: the
metadata a task wrote (through its export wrapper's ``metadata``) is passed on as ``meta["metadata"]``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import CheckpointError, UsageError
from visionkit.limits import DEFAULT_IN_CHANNELS, MAX_CLASSES, MAX_IMGSZ, MAX_IN_CHANNELS
from visionkit.registry import register
from visionkit.runtime.base import ExportedModel


@register("runtime", "onnx")
class OnnxModel(ExportedModel):
    """``OnnxModel("best.onnx")(x)`` → the export wrapper's outputs. ``meta`` holds what the file's
    metadata says (task, names, imgsz, in_channels, mean, std, ...)."""

    suffix = ".onnx"  # the files this backend runs

    def __init__(self, path: str | Path, overrides: dict[str, Any] | None = None):
        import onnxruntime  # noqa: F401  (missing onnxruntime: an ImportError here, not a load error below)

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file '{path}' does not exist")
        self.path = path
        try:
            self._open_session(torch.get_num_threads())
        except Exception as e:
            raise CheckpointError(f"onnxruntime cannot load '{path}': {e}") from e
        raw = self.session.get_modelmeta().custom_metadata_map
        try:
            self.meta = self._meta(raw, overrides or {}, path)
        except (ValueError, TypeError, KeyError) as e:  # metadata values that are not what visionkit writes
            raise CheckpointError(f"'{path}' has malformed visionkit metadata: {type(e).__name__}: {e}") from e
        self._check_sizes(path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _meta(raw: dict[str, str], overrides: dict[str, Any], path: Path) -> dict[str, Any]:
        if "task" not in raw:
            missing = [k for k in ("task", "names", "imgsz") if overrides.get(k) is None]
            if missing:
                raise UsageError(
                    f"'{path}' has no visionkit metadata (not exported by visionkit); pass "
                    f"{', '.join(k + '=' for k in missing)} to use it anyway"
                )
        if raw.get("task") and overrides.get("task") and overrides["task"] != raw["task"]:
            raise UsageError(
                f"'{path}' is a {raw['task']} model, not {overrides['task']}; run `visionkit {raw['task']} ...` with it"
            )
        names = overrides.get("names") or json.loads(raw.get("names", "[]"))
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
            raise ValueError(f"names must be a list of class names, got {str(names)[:80]}")
        channels = int(raw.get("in_channels", DEFAULT_IN_CHANNELS))
        config = json.loads(raw["model_config"]) if "model_config" in raw else None
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"model_config must be a mapping, got {type(config).__name__}")
        meta = {
            "task": str(overrides.get("task") or raw.get("task")),
            "names": [str(n) for n in names],
            "imgsz": int(overrides.get("imgsz") or raw.get("imgsz")),
            "in_channels": channels,
            "mean": _per_channel(raw, "mean", 0.0, channels),
            "std": _per_channel(raw, "std", 1.0, channels),
            "model_config": config,
            "data": None,
            "metadata": dict(raw),  # everything the file says; a task reads its own keys (e.g. detect's "nms")
        }
        return meta

    def _check_sizes(self, path: Path) -> None:
        """Sizes from the metadata are used to allocate input batches: bound them, and match them with the graph."""
        meta = self.meta
        for key, value, high in (
            ("imgsz", meta["imgsz"], MAX_IMGSZ),
            ("in_channels", meta["in_channels"], MAX_IN_CHANNELS),
        ):
            if not 1 <= value <= high:
                raise CheckpointError(
                    f"'{path}' declares {key}={value} in its metadata; expected 1..{high} (the "
                    f"file is corrupt or was edited)"
                )
        if len(meta["names"]) > MAX_CLASSES:
            raise CheckpointError(f"'{path}' lists {len(meta['names'])} class names; at most {MAX_CLASSES} are read")
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4:
            raise CheckpointError(f"'{path}' takes an input of shape {shape}; visionkit feeds (batch, C, H, W)")
        fixed = [d for d in shape[1:] if isinstance(d, int)]
        if isinstance(shape[1], int) and shape[1] != meta["in_channels"]:
            raise CheckpointError(
                f"'{path}': its metadata says in_channels={meta['in_channels']} but the graph takes {shape[1]} channels"
            )
        if len(fixed) == 3 and meta["imgsz"] not in shape[2:]:
            raise CheckpointError(
                f"'{path}': its metadata says imgsz={meta['imgsz']} but the graph takes {shape[2]}×{shape[3]} images"
            )

    def _open_session(self, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.threads = threads

    def __call__(self, x: torch.Tensor):
        # onnxruntime fixes a session's threads when it is made; predict, val and benchmark set torch's count
        # (threads=), so the session follows it
        if torch.get_num_threads() != self.threads:
            self._open_session(torch.get_num_threads())
        half = self.session.get_inputs()[0].type == "tensor(float16)"  # exported with half=True
        x = x.detach().cpu().numpy().astype(np.float16 if half else np.float32)
        dim = self.session.get_inputs()[0].shape[0]
        static = dim if isinstance(dim, int) else None  # a file exported without dynamic=True
        if static is None or len(x) == static:
            outs = self.session.run(None, {self.input_name: x})
        else:  # feed the fixed batch size, padding the last chunk, and stitch the outputs back together
            parts = []
            for i in range(0, len(x), static):
                chunk = x[i : i + static]
                n = len(chunk)
                if n < static:
                    chunk = np.concatenate([chunk, np.zeros((static - n, *chunk.shape[1:]), chunk.dtype)])
                parts.append([o[:n] for o in self.session.run(None, {self.input_name: chunk})])
            outs = [np.concatenate(p) for p in zip(*parts)]
        outs = [np.asarray(o) for o in outs]
        outs = tuple(torch.from_numpy(o.astype(np.float32) if o.dtype == np.float16 else o) for o in outs)
        return outs[0] if len(outs) == 1 else outs

    @property
    def fixed_size(self) -> bool:
        """True for a file exported without dynamic=True: it takes only its own height and width."""
        return all(isinstance(d, int) for d in self.session.get_inputs()[0].shape[2:])


def _per_channel(raw: dict[str, str], key: str, default: float, channels: int) -> list[float]:
    """``mean`` / ``std`` of the metadata: one finite number per input channel (std above 0); ValueError if not."""
    values = json.loads(raw[key]) if key in raw else [default] * channels
    if (
        not isinstance(values, list)
        or len(values) != channels
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        or (key == "std" and not all(v > 0 for v in values))
    ):
        raise ValueError(
            f"{key} must be {channels} finite number(s){' above 0' if key == 'std' else ''}, got {str(values)[:80]}"
        )
    return [float(v) for v in values]

"""Checkpoints: a dict of plain data and tensors, loaded with ``weights_only=True`` so a file cannot run code.

Keys: format, task, model_config, state_dict (EMA weights when EMA is on), names, imgsz, in_channels, mean, std,
train_args, epoch, best_fitness, metrics, versions; last.pt adds train_state (raw weights, optimizer, scheduler,
EMA updates, RNG states) for ``resume``.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision

from visionkit.errors import CheckpointError
from visionkit.models.build import VisionModel, build_model

FORMAT = "visionkit-checkpoint"
FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    from visionkit import __version__

    return {"visionkit": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions(), **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain data only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"refused to load {what} '{path}': it is not a plain-data file (it may contain Python objects that "
            f"could run code, or be corrupt). Details: {str(e).splitlines()[0][:300]}"
        ) from e


def load_checkpoint(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Load a visionkit checkpoint safely; ``task`` (if given) must match the one it was trained for."""
    path = Path(path)
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a visionkit checkpoint (no format='{FORMAT}' key); for plain "
                              f"backbone weights use weights=PATH instead")
    if task is not None and ckpt.get("task") != task:
        raise CheckpointError(f"checkpoint '{path}' was trained for task '{ckpt.get('task')}', not '{task}'; "
                              f"run `visionkit {ckpt.get('task')} ...` with it, or pick a {task} checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> VisionModel:
    """Rebuild the network from the checkpoint's config through the registry and load its weights."""
    net = build_model(ckpt["model_config"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def portable_config(config: dict) -> dict:
    """The model config without machine-local paths (a backbone's ``weights=`` file is already in the tensors)."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    if isinstance(cfg.get("backbone"), dict):
        cfg["backbone"].pop("weights", None)
    return cfg

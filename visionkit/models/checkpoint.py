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

from visionkit.errors import CheckpointError, VisionkitError
from visionkit.limits import DEFAULT_IN_CHANNELS, MAX_CLASSES, MAX_IMGSZ, MAX_IN_CHANNELS
from visionkit.models.build import VisionModel, build_model
from visionkit.registry import REGISTRY

FORMAT = "visionkit-checkpoint"
FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    from visionkit.version import __version__

    return {
        "visionkit": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename (never a half-written file; the
    previous file stays whole if the write fails). The file gets the mode other outputs get (the umask's), and
    temporary files a killed earlier write left beside it are removed."""
    path = Path(path)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions(), **ckpt}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a write killed (kill -9) before its rename
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        err = CheckpointError(
            f"cannot write checkpoint '{path}': {e.strerror or e}; check that the folder is "
            f"writable and the disk is not full (project= picks another place)"
        )
        err.path = path  # the file a disk-full report names
        raise err from e
    try:
        # through a Python file object: torch.save given a path reports a full disk as a RuntimeError ("unexpected
        # pos") that says nothing of the cause; given a file, the OSError(ENOSPC) is raised or chained
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        Path(tmp).unlink(missing_ok=True)
        e = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
        if not isinstance(e, OSError):
            raise
        err = CheckpointError(
            f"cannot write checkpoint '{path}': {e.strerror or e}; the previous file (if any) is "
            f"unchanged. Free disk space or pick another project="
        )
        err.path = path
        raise err from e
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
            f"could run code, or be corrupt). Details: {(str(e).splitlines() or [type(e).__name__])[0][:300]}"
        ) from e


def load_checkpoint(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Load a visionkit checkpoint safely; ``task`` (if given) must match the one it was trained for."""
    path = Path(path)
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not a visionkit checkpoint (no format='{FORMAT}' key); for plain "
            f"backbone weights use weights=PATH instead"
        )
    check_declared_sizes(ckpt, path)
    if task is not None and ckpt.get("task") != task:
        raise CheckpointError(
            f"checkpoint '{path}' was trained for task '{ckpt.get('task')}', not '{task}'; "
            f"run `visionkit {ckpt.get('task')} ...` with it, or pick a {task} checkpoint"
        )
    upgrade_model_config(ckpt)
    return ckpt


def upgrade_model_config(ckpt: dict[str, Any]) -> None:
    """Fill the config keys a part gained (or whose default changed) after the file was written, with the values
    that rebuild the file's own network: a registered backbone, neck or head builder may carry
    ``upgrade_config(spec, state_dict, prefix)``, which reads the file's tensors under ``prefix``."""
    config, state = ckpt["model_config"], ckpt["state_dict"]
    for field in ("backbone", "neck", "head"):
        spec = config.get(field)
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            continue
        try:
            upgrade = getattr(REGISTRY.get(field, spec["name"]), "upgrade_config", None)
        except VisionkitError:
            continue  # an unknown part is reported, with close matches, when the network is built
        if upgrade is not None:
            config[field] = upgrade(dict(spec), state, f"{field}.")


def _bounded_int(value, key: str, low: int, high: int, path) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(
            f"checkpoint '{path}' declares {key}={value!r}; expected an integer in {low}..{high} "
            f"(the file is corrupt or was not written by visionkit)"
        )


def check_declared_sizes(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Sizes the file declares (classes, channels, image size), checked against sane limits before any of them is
    used to allocate memory."""
    config = ckpt.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint '{path}' has no model_config mapping; it cannot be rebuilt")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint '{path}' has no state_dict of tensors")
    _bounded_int(config.get("num_classes"), "model_config.num_classes", 1, MAX_CLASSES, path)
    _bounded_int(config.get("in_channels", DEFAULT_IN_CHANNELS), "model_config.in_channels", 1, MAX_IN_CHANNELS, path)
    if ckpt.get("imgsz") is not None:
        _bounded_int(ckpt["imgsz"], "imgsz", 1, MAX_IMGSZ, path)
    if ckpt.get("in_channels") is not None:
        _bounded_int(ckpt["in_channels"], "in_channels", 1, MAX_IN_CHANNELS, path)
    names = ckpt.get("names")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_CLASSES):
        raise CheckpointError(
            f"checkpoint '{path}' has a names entry that is not a list of at most {MAX_CLASSES} class names"
        )


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> VisionModel:
    """Rebuild the network from the checkpoint's config through the registry and load its weights.

    The network is first built on the meta device (no memory) and its tensor shapes compared with the file's, so
    a config that describes a far larger network than the tensors it carries fails before anything is allocated."""
    check_declared_sizes(ckpt, path)
    try:
        with torch.device("meta"):
            skeleton = build_model(ckpt["model_config"])
    except VisionkitError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"checkpoint '{path}': its model_config cannot be built: {type(e).__name__}: {str(e)[:300]}"
        ) from e
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    if expected != stored:
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        shaped = [k for k in sorted(set(expected) & set(stored)) if expected[k] != stored[k]]
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                (
                    f"{shaped[0]} is {list(stored[shaped[0]])} in the file but "
                    f"{list(expected[shaped[0]])} in the config"
                    + (f" (and {len(shaped) - 1} more)" if len(shaped) > 1 else "")
                )
                if shaped
                else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint '{path}': its tensors do not fit its model_config ({detail}); the file "
            f"is corrupt or was edited"
        )
    net = build_model(ckpt["model_config"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def portable_config(config: dict) -> dict:
    """The model config without machine-local paths (a backbone's ``weights=`` file is already in the tensors)."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    if isinstance(cfg.get("backbone"), dict):
        cfg["backbone"].pop("weights", None)
    return cfg

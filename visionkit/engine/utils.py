"""Device selection, seeding and run folders."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.engine.rundir import create_run_dir
from visionkit.errors import UsageError


def select_device(spec: str | int | None = "auto") -> torch.device:
    """auto, cpu, cuda, cuda:N, N, "0,1" (first listed; multi-GPU is not split across devices here), mps."""
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("device=mps was asked for but MPS is not available on this machine; use device=cpu")
        return torch.device("mps")
    m = re.fullmatch(r"(?:cuda:?)?(\d+)(?:,\d+)*|cuda", spec)
    if not m:
        raise UsageError(f"bad value device={spec!r}: use auto, cpu, cuda, cuda:N, N, 0,1 or mps")
    if not torch.cuda.is_available():
        raise UsageError(f"device={spec} was asked for but CUDA is not available here; use device=cpu or auto")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"device={spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device(f"cuda:{index}")


def init_seeds(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:  # training batches have one fixed size: let cuDNN time its convolution algorithms once and keep the best
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """Every RNG's state as plain data and tensors (checkpoint-safe)."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_run_dir(args: Settings, task: str, mode: str, hold: bool = False) -> Path:
    """``runs/TASK/NAME``, or ``NAME2``, ``NAME3``, ... if taken (unless exist_ok); created race-free and refused
    while a run in another process holds it. ``hold``: keep its lock until ``rundir.release_run_dir``."""
    return create_run_dir(Path(args.project) / task / (args.name or mode), bool(args.exist_ok), hold=hold)

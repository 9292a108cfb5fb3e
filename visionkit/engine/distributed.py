"""Data-parallel training on torch.distributed: the process group a torchrun worker joins, and the few collective
helpers the trainer needs. Every process runs the same Trainer; rank 0 alone validates and writes.

A process is a distributed worker when torchrun (``torch.distributed.run``) set ``WORLD_SIZE`` > 1 in its
environment; ``visionkit TASK train device=0,1`` starts such workers itself (visionkit/engine/launch.py).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from visionkit.errors import UsageError

# how long a collective waits for a missing rank before the job fails (a dead rank is caught sooner by torchrun)
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def env_info() -> DistInfo:
    """What torchrun told this process (a single process when it did not)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def cuda_ids(device) -> list[int]:
    """GPU indices a ``device`` value lists: "0,1,2" → [0, 1, 2], "cuda:1" → [1]; [] for cpu/auto/mps."""
    spec = "" if device is None else str(device).strip().lower()
    if isinstance(device, (list, tuple)):
        return [int(d) for d in device]
    if re.fullmatch(r"(cuda:?)?\d+(,\d+)*", spec):
        return [int(v) for v in re.sub(r"^cuda:?", "", spec).split(",")]
    return []


def setup(device_spec, info: DistInfo) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPU) and return this rank's device: the ``local_rank``-th GPU
    that ``device`` lists (``device=2,3``: ranks use cuda:2 and cuda:3), every GPU in order when it lists none,
    or the CPU for ``device=cpu``."""
    spec = "auto" if device_spec is None else str(device_spec).strip().lower()
    use_cuda = spec != "cpu" and spec != "mps" and torch.cuda.is_available()
    if spec not in ("cpu", "auto") and not use_cuda:
        raise UsageError(
            f"device={device_spec} asks for CUDA, which this machine lacks; distributed training on "
            f"CPU: device=cpu nproc=N"
        )
    if use_cuda:
        ids = cuda_ids(spec) or list(range(torch.cuda.device_count()))
        if info.local_rank >= len(ids):
            raise UsageError(
                f"rank {info.rank} (local rank {info.local_rank}) has no GPU: device={device_spec} lists "
                f"{len(ids)}; start at most {len(ids)} processes per node"
            )
        device = torch.device(f"cuda:{ids[info.local_rank]}")
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=COLLECTIVE_TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
    return device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (plain Python data)."""
    if not info.enabled:
        return value
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not info.enabled:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def mean(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a number over the ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size

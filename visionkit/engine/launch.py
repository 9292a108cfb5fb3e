"""``visionkit TASK train device=0,1,2,3`` (or ``device=cpu nproc=2``) starts its processes through
torch.distributed.run, torchrun's own entry point, on a free rendezvous port, and says which torchrun command
does the same. A process that dies ends the whole job (torchrun stops the others) with a message naming it."""

from __future__ import annotations

import os
import shlex
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionkit.engine.cpus import usable_cpus
from visionkit.engine.distributed import cuda_ids
from visionkit.errors import VisionkitError


class DistributedRunError(VisionkitError):
    """A process of a distributed run failed; the others were stopped."""


def process_count(settings: Mapping[str, Any]) -> int:
    """How many processes a training command asks for on this machine: nproc=, else one per listed GPU. Takes the
    resolved settings or the bare command-line overrides (the CLI decides before anything is resolved)."""
    if settings.get("nproc"):
        return int(settings["nproc"])
    return max(1, len(cuda_ids(settings.get("device"))))


def is_worker() -> bool:
    """True inside a process torchrun started (it sets LOCAL_RANK / WORLD_SIZE)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(task: str, argv: list[str], nproc: int, project: str | None = None) -> int:
    """Run ``visionkit TASK train ARGV`` as ``nproc`` processes on this machine; 0 when all of them succeed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    port = free_port()  # a port in use is never an error: the rendezvous takes a free one
    cmd = [
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--max-restarts=0",
        "-m",
        "visionkit",
        task,
        "train",
        *argv,
    ]
    print(
        f"distributed training: {nproc} processes on this machine; the same by hand:\n  torchrun "
        f"--nproc-per-node={nproc} -m visionkit {task} train {' '.join(shlex.quote(a) for a in argv)}",
        flush=True,
    )
    # each process's OpenMP pool starts at its share of the cores this process may use (affinity, cgroup quota);
    # torchrun would otherwise say 1. Inside, the trainer sets its threads from the same share (engine/threads.py)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus().usable // nproc)))
    try:
        run(get_args_parser().parse_args(cmd))
    except ChildFailedError as e:
        raise DistributedRunError(_failure_message(e, task, project)) from None
    return 0


def _failure_message(error, task: str, project: str | None) -> str:
    failures = getattr(error, "failures", {}) or {}
    parts = []
    for rank, f in sorted(failures.items()):
        code = getattr(f, "exitcode", None)
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if isinstance(code, int) and code < 0 and -code in signal.Signals._value2member_map_
            else f"exited with code {code}"
        )
        parts.append(f"rank {rank} (pid {getattr(f, 'pid', '?')}) {how}")
    runs = Path(project or "runs") / task
    last = sorted(runs.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    resume = (
        (f"; the last finished epoch is in {last[-1]}: continue with `visionkit {task} train resume={last[-1]}`")
        if last
        else ""
    )
    return f"distributed training failed: {'; '.join(parts) or 'a process failed'}; the others were stopped{resume}"

"""How many intra-op threads and loader workers a run uses, from the cores this process may actually use
(:mod:`visionkit.engine.cpus`), and the one line that says so at the start of a run.

On a CPU device the network's threads and the loader's workers compete for the same cores, so they share them:
``threads + workers <= cores``. Up to 4 cores the math gets every core and the images load in the main process
(on 2 cores, loader workers beside the math trained slower than none: docs/performance.md); from 5 cores on a
quarter of them (at most 8) load images. On a GPU the math runs there: the workers get the cores, one is left to
the main process. An explicit ``threads=`` or ``workers=`` is obeyed, but never above the usable cores (in a
distributed run, this process's share of them). Each loader worker runs single-threaded math.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from visionkit.engine.cpus import CpuBudget, usable_cpus

MAX_AUTO_WORKERS = 8
SMALL_CPU = 4  # up to this many cores, CPU training loads images in the main process


@dataclass(frozen=True)
class CpuPlan:
    """``threads`` intra-op threads in the main process and ``workers`` loader processes, for ``device_type``;
    ``share``: the cores of this process (the usable ones divided among a distributed run's local processes)."""

    threads: int
    workers: int
    budget: CpuBudget
    share: int
    processes: int
    device_type: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """``cpu: 2 usable cores (affinity 2, cgroup quota none): 2 threads, 0 loader workers``."""
        per = f", {self.share} per process" if self.processes > 1 else ""
        threads = f"{self.threads} {'thread' if self.threads == 1 else 'threads'}"
        workers = f"{self.workers} loader {'worker' if self.workers == 1 else 'workers'}"
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.device_type}: {self.budget.describe()}{per}: {threads}, {workers}{notes}"


def local_processes() -> int:
    """Processes of a distributed run on this machine (torchrun's LOCAL_WORLD_SIZE); 1 outside one."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _explicit(value, key: str, cap: int, cores: str, notes: list[str]) -> int | None:
    """An explicit value (None, and 0 for threads, mean automatic), capped at ``cap`` cores (this process's)."""
    if value is None or (key == "threads" and int(value) == 0):
        return None
    value = int(value)
    if value > cap:
        notes.append(f"{key}={value} capped at {cores}")
        return cap
    return value


def omp_threads() -> int | None:
    """OMP_NUM_THREADS when it is set to a positive whole number (the first of a nested list), else None."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def plan_cpus(
    threads: int | None,
    workers: int | None,
    device_type: str,
    budget: CpuBudget | None = None,
    processes: int | None = None,
) -> CpuPlan:
    """The threads and workers of one process: ``threads`` / ``workers`` as the user set them (None, or 0 threads:
    automatic), on a ``device_type`` ('cpu', 'cuda', 'mps') device, with ``processes`` local processes sharing
    the ``budget`` (default: this process's usable cores and torchrun's local world size)."""
    budget = budget or usable_cpus()
    processes = processes or local_processes()
    share = max(1, budget.usable // processes)
    notes: list[str] = []
    cap = f"the {share} usable cores" + (" of this process" if processes > 1 else "")
    t = _explicit(threads, "threads", share, cap, notes)
    w = _explicit(workers, "workers", share, cap, notes)
    if t is None and omp_threads() is not None:  # the environment's convention (torchrun, job schedulers) counts
        t = min(omp_threads(), share)
        notes.append(f"threads from OMP_NUM_THREADS={omp_threads()}")
    if device_type == "cpu":  # threads and workers share the cores
        if w is None:
            w = 0 if share <= SMALL_CPU else min(MAX_AUTO_WORKERS, share // 4)
            w = min(w, max(0, share - (t or 1)))
        if t is None:
            t = max(1, share - w)
    else:  # the math runs on the accelerator: the cores load images, one stays with the main process
        if w is None:
            w = min(MAX_AUTO_WORKERS, max(0, share - (t or 1)))
        if t is None:
            t = max(1, share - w)
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    if device_type == "cpu" and t > 1 and policy.upper() != "PASSIVE":  # set by `import visionkit` unless given
        notes.append(f"OMP_WAIT_POLICY={policy or 'unset'}: waiting threads spin, slow on a busy machine")
    return CpuPlan(t, w, budget, share, processes, device_type, tuple(notes))


def plan_for(args, device) -> CpuPlan:
    """The plan for a run's settings (``threads``, ``workers``) on ``device`` (a torch.device)."""
    return plan_cpus(args.threads, args.workers, device.type)


@contextmanager
def use_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the duration (the caller's own setting comes back after)."""
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def single_threaded_worker() -> None:
    """Called in each loader worker: one torch thread and no OpenCV thread pool. The workers are the parallelism;
    threads inside them would fight the main process's for the same cores."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(0)  # 0: OpenCV runs its functions sequentially, in the calling thread

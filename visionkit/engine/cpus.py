"""How many CPUs this process may actually use: its affinity mask (``taskset``, ``docker --cpuset-cpus``) and its
cgroup's CPU quota (``docker --cpus``, Kubernetes CPU limits), the smaller of both, at least 1.

``os.cpu_count()`` counts the machine's CPUs, not the ones a container or a pinned process gets: sizing threads by it
on a 64-core host that allows this process 2 makes dozens of threads share 2 cores. A quota of 1.5 CPUs counts as 1
usable core (rounded down: a second thread would only be throttled).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")  # where cgroup v1 mounts the cpu controller


@dataclass(frozen=True)
class CpuBudget:
    """``usable``: the cores this process may use; ``affinity``: CPUs in its affinity mask (None where the platform
    has none); ``quota``: CPUs its cgroup quota allows (e.g. 1.5; None: no quota)."""

    usable: int
    affinity: int | None
    quota: float | None

    def describe(self) -> str:
        """``2 usable cores (affinity 2, cgroup quota none)``."""
        affinity = "n/a" if self.affinity is None else str(self.affinity)
        quota = "none" if self.quota is None else f"{self.quota:g} CPUs"
        cores = "core" if self.usable == 1 else "cores"
        return f"{self.usable} usable {cores} (affinity {affinity}, cgroup quota {quota})"


def affinity_count() -> int | None:
    """CPUs in this process's affinity mask; None where the OS has no such call (macOS, Windows)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return len(getter(0)) or None
    except OSError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(directory: Path) -> float | None:
    """``cpu.max``: ``"quota period"`` or ``"max period"`` (no limit)."""
    text = _read(directory / "cpu.max")
    if not text:
        return None
    parts = text.split()
    try:
        if parts[0] == "max":
            return None
        quota, period = int(parts[0]), int(parts[1]) if len(parts) > 1 else 100_000
    except (ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1: no limit) over ``cpu.cfs_period_us``."""
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process's cgroups, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _walk(mount: Path, own: str | None) -> list[Path]:
    """The folders whose limits apply: this process's cgroup and each parent up to the mount (a limit anywhere on
    the way binds). Only the mount when the cgroup's own folder is not visible (a namespaced container)."""
    dirs = []
    if own and own.strip("/"):
        d = mount / own.strip("/")
        if d.is_dir():
            while d != mount and mount in d.parents:
                dirs.append(d)
                d = d.parent
    return [*dirs, mount]


def cgroup_quota(root: str | Path = CGROUP_ROOT, proc_cgroup: str | Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup quota allows (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, the tightest on the way to the root); None when there is no quota or no cgroup."""
    root, proc_cgroup = Path(root), Path(proc_cgroup)
    v2_path, v1_path = _own_paths(proc_cgroup)
    quotas: list[float] = []
    if (root / "cgroup.controllers").is_file() or (root / "cpu.max").is_file():  # v2 (unified) at the root
        quotas += [q for d in _walk(root, v2_path) if (q := _v2_quota(d)) is not None]
    for name in V1_CPU_DIRS:
        mount = root / name
        if mount.is_dir():
            quotas += [q for d in _walk(mount, v1_path) if (q := _v1_quota(d)) is not None]
            break
    return min(quotas) if quotas else None


def usable_cpus(root: str | Path = CGROUP_ROOT, proc_cgroup: str | Path = PROC_CGROUP) -> CpuBudget:
    """The cores this process may use: the smaller of its affinity mask and its cgroup quota, at least 1 (the
    machine's count only where neither is known)."""
    affinity = affinity_count()
    quota = cgroup_quota(root, proc_cgroup)
    limits = [n for n in (affinity, math.floor(quota) if quota is not None else None) if n is not None]
    usable = min(limits) if limits else (os.cpu_count() or 1)
    return CpuBudget(max(1, usable), affinity, quota)

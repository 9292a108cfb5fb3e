"""Usable CPUs: affinity mask and cgroup quota (fake cgroup trees in a tmp folder), never os.cpu_count()."""

from __future__ import annotations

import os

import pytest

from visionkit.engine import cpus


def _tree(tmp_path, files: dict[str, str], proc: str = "0::/\n"):
    for rel, text in files.items():
        p = tmp_path / "cg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "cg").mkdir(exist_ok=True)
    (tmp_path / "proc_cgroup").write_text(proc)
    return tmp_path / "cg", tmp_path / "proc_cgroup"


@pytest.fixture
def affinity(monkeypatch):
    """Set the affinity mask's size the module sees."""

    def set_count(n: int | None):
        if n is None:
            monkeypatch.delattr(os, "sched_getaffinity", raising=False)
        else:
            monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_count


@pytest.mark.parametrize(
    "cpu_max, quota",
    [("max 100000", None), ("50000 100000", 0.5), ("150000 100000", 1.5), ("400000 100000", 4.0), ("junk", None)],
)
def test_cgroup_v2_cpu_max(tmp_path, cpu_max, quota):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu io memory", "cpu.max": cpu_max})
    assert cpus.cgroup_quota(root, proc) == quota


def test_cgroup_v2_tightest_on_the_way_to_the_root(tmp_path):
    root, proc = _tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu",
            "cpu.max": "max 100000",
            "kubepods/cpu.max": "300000 100000",
            "kubepods/pod1/cpu.max": "max 100000",
        },
        proc="0::/kubepods/pod1\n",
    )
    assert cpus.cgroup_quota(root, proc) == 3.0


def test_cgroup_v1_cfs_quota(tmp_path):
    root, proc = _tree(
        tmp_path,
        {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        proc="4:memory:/x\n2:cpu,cpuacct:/\n",
    )
    assert cpus.cgroup_quota(root, proc) == 2.0


def test_cgroup_v1_no_quota(tmp_path):
    root, proc = _tree(tmp_path, {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert cpus.cgroup_quota(root, proc) is None


def test_no_cgroup_at_all(tmp_path):
    assert cpus.cgroup_quota(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_usable_is_the_smaller_of_affinity_and_quota(tmp_path, affinity):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "150000 100000"})
    affinity(8)
    budget = cpus.usable_cpus(root, proc)
    assert (budget.usable, budget.affinity, budget.quota) == (1, 8, 1.5)  # 1.5 CPUs: one whole core
    assert budget.describe() == "1 usable core (affinity 8, cgroup quota 1.5 CPUs)"
    affinity(2)
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000"})
    assert cpus.usable_cpus(root, proc).describe() == "2 usable cores (affinity 2, cgroup quota none)"


def test_never_below_one_and_not_cpu_count(tmp_path, affinity, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "20000 100000"})
    affinity(4)
    assert cpus.usable_cpus(root, proc).usable == 1  # 0.2 CPUs: still one
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000"})
    assert cpus.usable_cpus(root, proc).usable == 4  # the mask, not the 64 the machine has
    affinity(None)  # no affinity call (macOS): the quota, else the machine's count
    assert cpus.usable_cpus(root, proc).usable == 64
    root, proc = _tree(tmp_path, {"cpu.max": "300000 100000"})
    assert cpus.usable_cpus(root, proc).usable == 3


def test_this_machine():
    budget = cpus.usable_cpus()
    assert 1 <= budget.usable <= (os.cpu_count() or 1)

"""Threads and loader workers: the automatic choice's rules, explicit values, single-threaded workers, the header."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from visionkit.engine.cpus import CpuBudget
from visionkit.engine.setup import make_loader
from visionkit.engine.threads import plan_cpus, use_threads


@pytest.fixture(autouse=True)
def _sleeping_openmp(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # as `import visionkit` sets it; one test changes it
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite's workers set it; one test sets it


def test_omp_num_threads_is_the_automatic_thread_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    plan = plan_cpus(None, None, "cpu", budget(4), processes=1)
    assert (plan.threads, plan.workers) == (1, 0) and "OMP_NUM_THREADS=1" in plan.describe()
    assert plan_cpus(3, None, "cpu", budget(4), processes=1).threads == 3  # threads= wins over the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert plan_cpus(None, None, "cpu", budget(4), processes=1).threads == 4  # never more than the usable cores
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert plan_cpus(None, None, "cpu", budget(4), processes=1).threads == 4  # not a number: ignored


def budget(n: int) -> CpuBudget:
    return CpuBudget(n, n, None)


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 6, 8, 16, 64])
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_automatic_never_more_than_the_usable_cores(cores, device):
    plan = plan_cpus(None, None, device, budget(cores), processes=1)
    assert plan.threads >= 1 and plan.workers >= 0
    assert plan.threads + plan.workers <= max(cores, 1)


@pytest.mark.parametrize("cores", [1, 2, 4])
def test_small_cpu_gives_every_core_to_the_math(cores):
    plan = plan_cpus(None, None, "cpu", budget(cores), processes=1)
    assert (plan.threads, plan.workers) == (cores, 0)


def test_larger_cpu_and_gpu_hosts_load_in_workers():
    cpu = plan_cpus(None, None, "cpu", budget(16), processes=1)
    assert (cpu.threads, cpu.workers) == (12, 4)
    gpu = plan_cpus(None, None, "cuda", budget(16), processes=1)
    assert (gpu.threads, gpu.workers) == (8, 8)  # at most 8 workers; the rest stays with the main process
    assert plan_cpus(None, None, "cuda", budget(2), processes=1).workers == 1


def test_explicit_values_win_within_the_usable_cores():
    plan = plan_cpus(1, 3, "cpu", budget(4), processes=1)
    assert (plan.threads, plan.workers, plan.notes) == (1, 3, ())
    plan = plan_cpus(None, 2, "cpu", budget(4), processes=1)  # threads fill what the workers leave
    assert (plan.threads, plan.workers) == (2, 2)
    plan = plan_cpus(0, 0, "cuda", budget(4), processes=1)  # threads=0 is automatic, workers=0 is obeyed
    assert (plan.threads, plan.workers) == (4, 0)
    plan = plan_cpus(8, 16, "cpu", budget(2), processes=1)
    assert (plan.threads, plan.workers) == (2, 2)
    assert plan.notes == ("threads=8 capped at the 2 usable cores", "workers=16 capped at the 2 usable cores")
    assert "capped" in plan.describe()


def test_distributed_processes_share_the_cores():
    plan = plan_cpus(None, None, "cpu", budget(8), processes=2)
    assert (plan.share, plan.threads, plan.workers) == (4, 4, 0)
    assert (
        plan.describe()
        == "cpu: 8 usable cores (affinity 8, cgroup quota none), 4 per process: 4 threads, 0 loader workers"
    )
    assert plan_cpus(None, None, "cpu", budget(2), processes=4).threads == 1  # never below one
    plan = plan_cpus(8, None, "cpu", budget(2), processes=2)  # an explicit value: within this process's share
    assert (plan.threads, plan.notes) == (1, ("threads=8 capped at the 1 usable cores of this process",))


def test_local_world_size_from_torchrun(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert plan_cpus(None, None, "cpu", budget(4)).share == 2


def test_describe_names_the_choice():
    plan = plan_cpus(None, None, "cpu", CpuBudget(2, 2, None), processes=1)
    assert plan.describe() == "cpu: 2 usable cores (affinity 2, cgroup quota none): 2 threads, 0 loader workers"
    plan = plan_cpus(1, 1, "cpu", CpuBudget(1, 4, 1.5), processes=1)
    assert plan.describe() == "cpu: 1 usable core (affinity 4, cgroup quota 1.5 CPUs): 1 thread, 1 loader worker"


def test_use_threads_gives_the_callers_setting_back():
    before = torch.get_num_threads()
    with use_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


class _Probe(Dataset):
    """Each item: the torch and OpenCV thread counts of the process that loads it."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        import cv2

        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


def test_loader_workers_run_single_threaded():
    loader = make_loader(_Probe(), 1, 1, False, torch.device("cpu"))
    assert isinstance(loader, DataLoader) and loader.num_workers == 1
    for item in loader:
        torch_threads, cv2_threads = item[0].tolist()
        assert torch_threads == 1
        assert cv2_threads <= 1  # setNumThreads(0): sequential (OpenCV reports 0 or 1 depending on its backend)


def test_training_header_names_the_choice_and_args_yaml_holds_it(classify_dir, tmp_path, capsys):
    import yaml

    from tests.conftest import TINY
    from visionkit import Model
    from visionkit.engine.cpus import usable_cpus

    before = torch.get_num_threads()
    m = Model("mnist-tiny")
    common = {**TINY, "data": str(classify_dir), "epochs": 1, "device": "cpu", "workers": None, "verbose": True}
    m.train(**common, threads=1, project=str(tmp_path / "a"))
    out = capsys.readouterr().out
    usable = usable_cpus()
    workers = m.trainer.cpu_plan.workers
    line = f"cpu: {usable.describe()}: 1 thread, {workers} loader {'worker' if workers == 1 else 'workers'}"
    assert line in out.splitlines()
    if usable.usable <= 4:
        assert workers == 0  # a small CPU machine loads in the main process
    args = yaml.safe_load((m.save_dir / "args.yaml").read_text())
    assert (args["threads"], args["workers"]) == (1, workers)  # what was used, not null
    assert torch.get_num_threads() == before  # the caller's setting is given back
    # validation plans the same way and says so
    m.val(data=str(classify_dir), imgsz=32, workers=None, threads=1, project=str(tmp_path / "v"), plots=False)
    assert line in capsys.readouterr().out.splitlines()


def test_import_visionkit_makes_openmp_threads_sleep_while_they_wait(monkeypatch):
    import subprocess
    import sys

    code = "import os, visionkit; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's value wins, and the header says what it costs
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ACTIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "OMP_WAIT_POLICY=ACTIVE" in plan_cpus(None, None, "cpu", budget(2), processes=1).describe()
    assert plan_cpus(None, None, "cpu", budget(1), processes=1).notes == ()  # one thread: nothing waits

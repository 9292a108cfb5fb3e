"""Run folders under concurrency: simultaneous runs with one name= get distinct folders, and a running run's
folder is not shared (exist_ok=True and resume are refused while it runs; a dead run's lock is taken over)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY
from visionkit.engine.rundir import RUN_LOCK, create_run_dir, lock_run_dir, release_run_dir
from visionkit.errors import UsageError

CLAIM = """
import sys, time
from pathlib import Path
from visionkit.engine.rundir import create_run_dir
go = float(sys.argv[2])
while time.time() < go:  # every process leaves the gate at the same instant
    pass
print(create_run_dir(Path(sys.argv[1]), hold=True).name, flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_simultaneous_processes_with_one_name_get_distinct_folders(tmp_path):
    base = tmp_path / "runs" / "detect" / "train"
    go = time.time() + 3.0  # all eight started (imports done) before the gate opens
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(base), str(go), "0"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(8)
    ]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(names) == sorted(["train", *[f"train{n}" for n in range(2, 9)]])  # eight folders, none shared
    # the processes ended holding their locks (as a killed run does): the kernel dropped them, the folders are free
    assert all(create_run_dir(base.with_name(n), exist_ok=True) == base.with_name(n) for n in names)


def test_simultaneous_threads_with_one_name_get_distinct_folders(tmp_path):
    base = tmp_path / "train"
    barrier = threading.Barrier(16)
    got: list[str] = []

    def claim():
        barrier.wait()
        got.append(create_run_dir(base).name)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 16 and {p.name for p in tmp_path.iterdir()} == set(got)


def test_exist_ok_on_a_running_runs_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    base = tmp_path / "train"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(base), "0", "600"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "train"  # the other process holds train/ now
        with pytest.raises(UsageError, match=rf"'{base}' belongs to a run that is still going \(pid {holder.pid}"):
            create_run_dir(base, exist_ok=True)
        assert create_run_dir(base).name == "train2"  # without exist_ok: the next free name, as always
    finally:
        holder.kill()  # kill -9: the lock file stays behind, but the kernel has dropped the lock
        holder.wait(30)
    assert (base / RUN_LOCK).read_text().strip() == str(holder.pid)
    assert create_run_dir(base, exist_ok=True, hold=True) == base  # taken over
    assert (base / RUN_LOCK).read_text().strip() == str(os.getpid())
    lock_run_dir(base)  # re-entrant in the process that holds it
    release_run_dir(base)
    assert not (base / RUN_LOCK).exists()


def test_resume_of_a_running_run_is_refused(classify_dir, tmp_path):
    from visionkit import Model

    m = Model("mnist-tiny")
    m.train(**TINY, data=str(classify_dir), project=str(tmp_path), epochs=3, patience=0, exist_ok=False)
    last = m.save_dir / "weights" / "last.pt"
    lock_run_dir(m.save_dir)  # this process stands for the run still going: resume from another must be refused
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    try:
        # the finished run is refused for that reason too; give it an epoch left by resuming an interrupted copy
        import torch

        ckpt = torch.load(last, weights_only=True)
        ckpt["epoch"] = 0
        torch.save(ckpt, last)
        out = subprocess.run(
            [sys.executable, "-m", "visionkit", "classify", "train", f"resume={last}", "verbose=False"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        release_run_dir(m.save_dir)
    assert out.returncode == 2, out.stderr
    assert "belongs to a run that is still going" in out.stderr + out.stdout

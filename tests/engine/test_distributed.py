"""Distributed training on the CPU (gloo, 2 processes started by `visionkit ... nproc=2` through torchrun): the same
global batches and loss curve as one process, exact resume of a 2-process run after a rank was killed, a dead rank
ending the whole job with a clear message, and a detector run."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # subprocesses and servers: `pytest -m "not slow"` leaves them out

# no augmentation, no dropout, a model without BatchNorm (LayerNorm works per image): 1 and 2 processes then
# compute the same gradients, up to the order of float sums
EXACT = [
    "model=vit-tiny",
    "imgsz=32",
    "batch=8",
    "device=cpu",
    "workers=0",
    "seed=3",
    "fliplr=0",
    "flipud=0",
    "degrees=0",
    "crop_scale=1.0",
    "color_jitter=0",
    "plots=false",
    "lr0=0.002",
    "warmup_epochs=0",
]


@pytest.fixture(scope="module")
def tiny_folder(shapes_root, tmp_path_factory) -> Path:
    """An ImageFolder of 32 train (8 per class) and 16 val images: 4 steps of 8 per epoch."""
    root = tmp_path_factory.mktemp("ddp") / "cls"
    for split, per_class in (("train", 8), ("val", 4)):
        for cls_dir in sorted((shapes_root / "classify" / split).iterdir()):
            dst = root / split / cls_dir.name
            dst.mkdir(parents=True)
            for p in sorted(cls_dir.iterdir())[:per_class]:
                shutil.copy(p, dst / p.name)
    return root


def rows(run: Path) -> list[dict[str, float]]:
    with open(run / "results.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def train(folder: Path, project: Path, *extra: str) -> subprocess.CompletedProcess:
    r = run_cli("classify", "train", f"data={folder}", f"project={project}", *EXACT, *extra)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    return r


def test_two_processes_follow_the_one_process_loss_curve(tiny_folder, tmp_path):
    train(tiny_folder, tmp_path / "one", "epochs=3")
    two = train(tiny_folder, tmp_path / "two", "epochs=3", "nproc=2")
    assert "torchrun --nproc-per-node=2 -m visionkit classify train" in two.stdout  # the equivalent command
    assert "2 processes (global batch 8)" in two.stdout and "time: data" in two.stdout
    a, b = rows(tmp_path / "one/classify/train"), rows(tmp_path / "two/classify/train")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):  # stated tolerance: 1e-4 relative (float sums in another order, gloo's all-reduce)
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-4)
        assert rb["top1"] == pytest.approx(ra["top1"], abs=1e-9)
    assert a[-1]["train_loss"] < a[0]["train_loss"]  # it learned something, so the comparison means something
    # (weights are not compared one by one: attention's key bias has a zero gradient, which Adam turns into steps
    # of float noise that differ between runs without changing any output)
    last = torch.load(tmp_path / "two/classify/train/weights/last.pt", weights_only=True)
    assert len(last["train_state"]["rng_ranks"]) == 2  # each rank's random state, for an exact resume
    # only rank 0 wrote: one run folder, one set of checkpoints
    assert sorted(p.name for p in (tmp_path / "two/classify").iterdir()) == ["train"]


def _worker_pid(tag: str, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank among processes whose environment carries ``tag``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"VISIONKIT_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.skipif(sys.platform != "linux", reason="finds the worker through /proc")
def test_a_killed_rank_ends_the_job_and_the_run_resumes_exactly(tiny_folder, tmp_path):
    reference = train(tiny_folder, tmp_path / "ref", "epochs=4", "nproc=2")
    assert reference.returncode == 0
    tag = uuid.uuid4().hex
    cmd = [
        sys.executable,
        "-m",
        "visionkit",
        "classify",
        "train",
        f"data={tiny_folder}",
        f"project={tmp_path / 'crash'}",
        *EXACT,
        "epochs=4",
        "nproc=2",
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "VISIONKIT_TEST_TAG": tag}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    results = tmp_path / "crash/classify/train/results.csv"
    deadline = time.time() + 240
    while time.time() < deadline and (not results.is_file() or results.read_text().count("\n") < 3):
        time.sleep(0.02)  # wait for 2 finished epochs (header + 2 rows), then kill rank 1 mid-run
    pid = _worker_pid(tag, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.time() - killed_at < 90  # the job ended, it did not hang
    assert "rank 1" in err and "SIGKILL" in err and "resume=" in err, err[-2000:]
    last = tmp_path / "crash/classify/train/weights/last.pt"
    done = torch.load(last, weights_only=True)["epoch"]
    assert done in (1, 2)  # a usable last.pt: epoch 2 (or 3, when the kill landed after its save)
    r = run_cli("classify", "train", f"resume={last}", "nproc=2", "device=cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    resumed, ref = rows(tmp_path / "crash/classify/train"), rows(tmp_path / "ref/classify/train")
    assert [row["epoch"] for row in resumed] == [1, 2, 3, 4]
    for a, b in zip(resumed, ref):  # exactly the uninterrupted run's curve
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["top1"] == pytest.approx(b["top1"], abs=1e-9)


@pytest.mark.parametrize(
    "task, model, metric",
    [
        ("detect", "yolo-n", "mAP50-95"),
        ("instance", "yolo-n-seg", "mask_mAP50-95"),
        ("segment", "unet-n", "mIoU"),
        ("depth", "depth-n", "delta1"),
    ],
)
def test_every_dense_task_trains_on_two_processes(shapes_root, tmp_path, task, model, metric):
    r = run_cli(
        task,
        "train",
        f"data={shapes_root / 'data.yaml'}",
        f"model={model}",
        "imgsz=64",
        "epochs=1",
        "batch=8",
        "device=cpu",
        "nproc=2",
        "workers=1",
        "plots=false",
        "close_mosaic=0",
        f"project={tmp_path}",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(tmp_path / task / "train/weights/best.pt", weights_only=True)
    assert ckpt["train_args"]["nproc"] == 2 and metric in ckpt["metrics"]


def test_bad_process_settings_are_refused(tiny_folder, tmp_path):
    r = run_cli("classify", "train", f"data={tiny_folder}", f"project={tmp_path}", *EXACT, "epochs=1", "nproc=3")
    assert r.returncode != 0 and "batch=8 is the global batch" in r.stderr and "multiple of 3" in r.stderr
    from visionkit import Model
    from visionkit.errors import UsageError

    with pytest.raises(UsageError, match="torchrun --nproc-per-node=2"):
        Model("vit-tiny", task="classify").train(data=str(tiny_folder), device="cpu", nproc=2)

"""A disk that fills up in the middle of a run, on a real small file system (a size-limited tmpfs): one clear
error naming the file, last.pt left whole, and resume= continuing once space is back. Each write site of a run
is hit in turn: results.csv, last.pt, the plots, the label cache and an export."""

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from visionkit import Model
from visionkit.engine.diskfull import DiskFullError


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MB tmpfs of its own (needs root or CAP_SYS_ADMIN: otherwise the tests say so and skip)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command here to make a small file system")
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}); needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path, leave: int = 0) -> Path:
    """Write a ballast file until the file system is full, then give ``leave`` bytes back."""
    ballast = fs / f"ballast-{uuid.uuid4().hex[:6]}"
    with open(ballast, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        try:
            while True:  # the last partial page
                f.write(b"\0" * 512)
        except OSError:
            pass
    if leave:
        os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


def train_until_full(classify_dir, fs, event: str, at_epoch: int, leave: int = 0, **kw):
    ballast = []

    def fill_now(trainer):
        if trainer.epoch == at_epoch and not ballast:
            ballast.append(fill(fs, leave))

    m = Model("mnist-tiny")
    m.add_callback(event, fill_now)
    with pytest.raises(DiskFullError) as info:
        m.train(**{**TINY, "data": str(classify_dir), "project": str(fs), "epochs": 3, "patience": 0, **kw})
    return str(info.value), ballast[0], fs / "classify" / "train"


def resume_and_check(run: Path, ballast: Path, epochs: int = 3) -> None:
    ballast.unlink()  # space is back
    m = Model("mnist-tiny")
    m.train(resume=str(run / "weights" / "last.pt"), verbose=False)
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == epochs - 1
    rows = (run / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(1, epochs + 1)]  # every epoch, once
    assert not list(run.rglob("*.tmp"))


def test_full_disk_while_writing_results_csv(classify_dir, small_fs):
    msg, ballast, run = train_until_full(classify_dir, small_fs, "on_val_end", at_epoch=1)
    assert f"no space left on the device while writing '{run / 'results.csv'}'" in msg
    assert f"resume={run / 'weights' / 'last.pt'}" in msg and "holds epoch 1, whole" in msg
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 0  # loadable, the last whole epoch
    assert (run / "results.csv").read_text().count("\n") == 2  # header + epoch 1, not cut short
    resume_and_check(run, ballast)


def test_full_disk_while_writing_last_pt(classify_dir, small_fs):
    # a few KB left: results.csv still fits, the checkpoint does not
    msg, ballast, run = train_until_full(classify_dir, small_fs, "on_val_end", at_epoch=1, leave=12288)
    assert f"no space left on the device while writing '{run / 'weights' / 'last.pt'}'" in msg
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 0
    assert not list((run / "weights").glob(".*.tmp"))  # the half-written temporary is gone
    resume_and_check(run, ballast)


def test_full_disk_while_plotting(classify_dir, small_fs):
    msg, ballast, run = train_until_full(classify_dir, small_fs, "on_epoch_end", at_epoch=2, plots=True)
    assert "no space left on the device while writing" in msg and "results.png" in msg
    assert "All epochs done" in msg and "only the final check and plots are lost" in msg
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 2
    assert not (run / "results.png").exists()  # never a half-written picture


def test_full_disk_while_writing_the_label_cache(small_fs, tmp_path):
    import cv2
    import numpy as np

    from visionkit.tasks.detect.dataset import load_labels

    img = tmp_path / "images" / "a.jpg"
    img.parent.mkdir()
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ballast = fill(small_fs)
    with pytest.warns(UserWarning, match=r"label cache '.*labels.cache.json' not written: no space left"):
        out = load_labels([img], 1, small_fs)
    assert len(out["labels"]) == 1 and not list(small_fs.glob("labels.cache*"))  # labels read, no half cache
    ballast.unlink()
    load_labels([img], 1, small_fs)
    assert (small_fs / "labels.cache.json").is_file()


def test_full_disk_during_an_export(classify_dir, small_fs):
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(classify_dir), project=str(small_fs), epochs=1)
    best = m.save_dir / "weights" / "best.pt"
    ballast = fill(small_fs, leave=8192)  # room for the writability probe, not for the file
    with pytest.raises(
        DiskFullError, match=rf"export: no space left on the device while writing '{best.with_suffix('.onnx')}'"
    ):
        Model(str(best)).export(format="onnx")
    assert not list(best.parent.glob("*.onnx*"))  # nothing half-written left
    ballast.unlink()
    assert Model(str(best)).export(format="onnx").is_file()


def test_full_disk_while_saving_predictions(classify_dir, small_fs, tmp_path):
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(classify_dir), project=str(tmp_path / "runs"), epochs=1)
    model = Model(str(m.save_dir / "weights" / "best.pt"))
    images = sorted((classify_dir / "val").rglob("*.jpg"))[:4]
    ballast = fill(small_fs, leave=8192)  # the run folder fits, the pictures do not
    with pytest.raises(DiskFullError, match=r"predict: no space left on the device while writing '.*\.jpg'"):
        model.predict([str(p) for p in images], project=str(small_fs), save=True, verbose=False)
    assert not [p for p in small_fs.rglob("*.jpg") if p.stat().st_size == 0]  # no empty or half pictures
    ballast.unlink()
    assert len(model.predict([str(p) for p in images], project=str(small_fs), save=True, verbose=False)) == 4


def test_a_run_folder_on_a_full_disk_is_a_disk_full_error(tmp_path, monkeypatch):
    from visionkit.engine.rundir import create_run_dir

    def full(self, *a, **k):  # tmpfs makes folders even when full; other file systems say ENOSPC
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(DiskFullError, match="cannot create the run folder '.*train': no space left on the device"):
        create_run_dir(tmp_path / "train")

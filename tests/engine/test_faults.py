"""Faults a run must survive: kill -9 in the middle of a checkpoint write, and an export next to a checkpoint in a
folder that cannot take a file."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from visionkit.errors import CheckpointError
from visionkit.models.checkpoint import save_checkpoint

WRITER = """
import sys, torch
from visionkit.models.checkpoint import save_checkpoint
big = torch.zeros(48_000_000)  # about 190 MB: each write takes long enough to be killed in the middle
n = 0
while True:
    n += 1
    save_checkpoint({"task": "classify", "epoch": n, "model_config": {}, "state_dict": {"w": big}}, sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"task": "classify", "epoch": 0, "model_config": {}, "state_dict": {}}, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        deadline = time.monotonic() + 120
        # wait until at least one write finished and the next is under way (its temporary file exists)
        while time.monotonic() < deadline:
            if torch.load(path, weights_only=True)["epoch"] >= 1 and list(tmp_path.glob(".last.pt.*.tmp")):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the writer never got into a second write")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = list(tmp_path.glob(".last.pt.*.tmp"))
    assert stale, "the kill came between writes; nothing was interrupted"
    ckpt = torch.load(path, weights_only=True)  # the last complete write, whole
    assert ckpt["epoch"] >= 1 and ckpt["state_dict"]["w"].numel() == 48_000_000
    save_checkpoint({"task": "classify", "epoch": 99, "model_config": {}, "state_dict": {}}, path)
    assert not list(tmp_path.glob(".last.pt.*.tmp"))  # the next write removes what the killed one left
    assert torch.load(path, weights_only=True)["epoch"] == 99


def test_export_next_to_a_checkpoint_in_a_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    from visionkit import Model

    m = Model("mnist-tiny")
    m.config["num_classes"] = 2
    path = save_checkpoint(
        {
            "task": "classify",
            "model_config": m.config,
            "state_dict": m.net.state_dict(),
            "names": ["a", "b"],
            "imgsz": 28,
            "in_channels": 1,
            "mean": [0.5],
            "std": [0.5],
        },
        tmp_path / "best.pt",
    )
    model = Model(str(path))

    def read_only(*a, **k):  # as root, chmod cannot make a folder read-only: simulate what the OS says
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(
        CheckpointError,
        match=r"cannot write the exported file .* in '.*': Read-only file system; "
        r"copy the checkpoint to a writable folder",
    ):
        model.export(format="onnx")
    monkeypatch.undo()
    assert not list(tmp_path.glob("*.onnx"))

"""Shared fixtures: tiny generated datasets and a CLI runner. Nothing here reaches the network."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# before torch: OpenMP threads that sleep while they wait, as `import visionkit` sets it (here torch comes first)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests import cli_fork  # noqa: E402
from visionkit.data.synthetic import generate_shapes  # noqa: E402
from visionkit.registry import REGISTRY  # noqa: E402

# Under pytest-xdist each worker gets one core: several workers each spinning two OpenMP threads on a 2-core
# machine run 10x slower than one thread each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses

FIXTURES = Path(__file__).parent / "fixtures"


class _Tasks:
    """``TASKS["detect"]``: a registered task object, built on use."""

    def __getitem__(self, name: str):
        return REGISTRY.build("task", name)


TASKS = _Tasks()

# tiny, fast settings for end-to-end runs (the loggers' own tests switch TensorBoard back on)
TINY = {"imgsz": 32, "batch": 8, "workers": 0, "verbose": False, "plots": False, "tensorboard": False}
# a tracking server named in the environment would turn the MLflow logger on in every training test
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A tiny shapes dataset (16 train + 8 val scenes, 48×48)."""
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", n_train=16, n_val=8, size=48, verbose=False)


@pytest.fixture
def classify_dir(shapes_root, tmp_path) -> Path:
    """A writable copy of the shapes ImageFolder tree (train/<class>/, val/<class>/)."""
    dst = tmp_path / "cls"
    shutil.copytree(shapes_root / "classify", dst)
    return dst


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m visionkit ARGS`` and capture its output: in a child forked from a process that has the
    imports done (tests/cli_fork.py), or in a new interpreter when ``env`` changes how one starts."""
    full_env = {**os.environ, **(env or {})}
    if os.environ.get("VISIONKIT_TEST_FORK", "1") != "0" and not cli_fork.needs_interpreter(full_env):
        return cli_fork.run(list(args), cwd, full_env, timeout=600)
    return subprocess.run(
        [sys.executable, "-m", "visionkit", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


def mixed_aspect_dataset(root: Path) -> list[Path]:
    """Six images: landscape 64×32 and 64×48, portrait 32×64, each with one white box (label in YOLO form)."""
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    sizes = [(64, 32), (32, 64), (64, 48), (64, 32), (32, 64), (64, 48)]
    for k, (w, h) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        x1, y1, x2, y2 = w // 4, h // 4, w // 2, h // 2
        img[y1:y2, x1:x2] = 255
        cv2.imwrite(str(root / f"images/val/{k}.png"), img)
        (root / f"labels/val/{k}.txt").write_text(
            f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
        )
    return sorted((root / "images/val").glob("*.png"))


def spread_head(m) -> None:
    """Give a barely trained detector varied scores and boxes (class and box-bin logits with std 2 on images), so
    the detections MediaPipe and PyTorch are compared on are many and distinct, not one tied blob."""
    net = m.net.eval()
    head = net.head
    # an end-to-end head's inference reads its one-to-one branches
    cls, box = (head.one2one_cls, head.one2one_box) if hasattr(head, "one2one_cls") else (head.cls, head.box)
    torch.manual_seed(0)
    with torch.no_grad():
        for seq in list(cls) + list(box):
            torch.nn.init.normal_(seq[-1].weight, 0, 1.0)
            torch.nn.init.zeros_(seq[-1].bias)
        outs = net(torch.rand(2, 3, 64, 64))
        ch = 4 * head.reg_max
        box_std = torch.cat([o[:, :ch].flatten() for o in outs]).std()
        cls_std = torch.cat([o[:, ch:].flatten() for o in outs]).std()
        for seq in cls:
            seq[-1].weight.mul_(2 / cls_std)
            seq[-1].bias.fill_(-1.0)
        for seq in box:
            seq[-1].weight.mul_(2 / box_std)
    m.ckpt["state_dict"] = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save(m.ckpt, m.ckpt_path)


def spread_segmenter_head(m) -> None:
    """Give a barely trained segmenter's last layer random weights, so its class map has several classes in shapes
    that follow the image (masks compared pixel for pixel are then more than one flat class)."""
    net = m.net.eval()
    last = [mod for mod in net.modules() if isinstance(mod, torch.nn.Conv2d)][-1]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * 3 / last.weight[0].numel() ** 0.5)
        if last.bias is not None:
            last.bias.zero_()
    m.ckpt["state_dict"] = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save(m.ckpt, m.ckpt_path)


def train_tiny(task: str, model: str, shapes_root: Path, tmp_path_factory):
    """One epoch of ``model`` on the shapes dataset at 64 px: a real checkpoint in seconds."""
    from visionkit import Model

    m = Model(model, task=task)
    m.train(
        **{
            **TINY,
            "epochs": 1,
            "imgsz": 64,
            "close_mosaic": 0,
            "data": str(shapes_root / "data.yaml"),
            "project": str(tmp_path_factory.mktemp(task)),
        }
    )
    return m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url: str, body: dict, timeout: float = 60) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=timeout).read())


def serve_labelstudio(model: Path, *extra: str, port: int | None = None, env: dict | None = None):
    """``visionkit serve labelstudio`` in a subprocess (with ``env``, else this one's environment); returns (process,
    url) once /health answers. Its output goes to a temporary file (``proc.log``), never a pipe that could fill up
    and stall the server."""
    port = port or free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionkit", "serve", "labelstudio", f"model={model}", f"port={port}", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    proc.log = log
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            text = log.read()
            log.close()
            raise AssertionError(f"visionkit serve exited with {proc.returncode}: {text[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url
        except urllib.error.HTTPError as e:  # 401: it runs, and asks for the credentials it was given
            if e.code == 401:
                return proc, url
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    log.close()
    raise AssertionError("visionkit serve did not answer /health in 120 s")


def pytest_sessionfinish(session, exitstatus):
    cli_fork.close()  # the CLI fork server of this test process

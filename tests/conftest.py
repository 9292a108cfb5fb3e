"""Shared fixtures: tiny generated datasets and a CLI runner. Nothing here reaches the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from visionkit.data.synthetic import generate_shapes

# Under pytest-xdist each worker gets one core: several workers each spinning two OpenMP threads on a 2-core
# machine run 10x slower than one thread each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses

FIXTURES = Path(__file__).parent / "fixtures"

# tiny, fast settings for end-to-end runs
TINY = {"imgsz": 32, "batch": 8, "workers": 0, "verbose": False, "plots": False}


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
    """Run ``python -m visionkit ARGS`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "visionkit", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


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
            f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
    return sorted((root / "images/val").glob("*.png"))

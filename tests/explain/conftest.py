"""Fixtures of the explain tests: each task's tiny checkpoint (trained once per module) and a val image."""

import pytest

from tests.conftest import train_tiny
from visionkit import Model

TASK_MODELS = {
    "classify": "mnist-tiny",
    "detect": "yolo-n",
    "instance": "yolo-n-seg",
    "segment": "unet-n",
    "depth": "depth-n",
}


@pytest.fixture(scope="module")
def tiny(shapes_root, tmp_path_factory):
    """``tiny(task)``: a one-epoch checkpoint of that task on shapes at 64 px, trained on first use."""
    cache: dict[str, Model] = {}

    def get(task: str) -> Model:
        if task not in cache:
            cache[task] = train_tiny(task, TASK_MODELS[task], shapes_root, tmp_path_factory)
        return Model(str(cache[task].ckpt_path))  # a fresh Model: tests cannot leak state into each other

    return get


@pytest.fixture
def image(shapes_root) -> str:
    return str(sorted((shapes_root / "images/val").glob("*.jpg"))[0])

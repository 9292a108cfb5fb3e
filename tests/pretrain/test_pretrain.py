"""visionkit pretrain: self-supervised pretraining on unlabelled images writes a backbone checkpoint weights= takes."""

import math

import cv2
import numpy as np
import pytest
import torch

from visionkit import Model
from visionkit.errors import DataError
from visionkit.models.build import build_model
from visionkit.models.weights import load_weights

pytest.importorskip("lightly")


@pytest.fixture
def unlabelled(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(8):
        img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        cv2.circle(img, (20, 20), 5 + i, (255, 255, 255), -1)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    return tmp_path / "images"


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_pretrain_writes_a_backbone_any_task_loads(method, unlabelled, tmp_path):
    from visionkit.pretrain import pretrain

    torch.manual_seed(0)
    best = pretrain(
        data=str(unlabelled),
        model="yolo-n",
        method=method,
        epochs=1,
        imgsz=32,
        batch=4,
        workers=0,
        verbose=False,
        project=str(tmp_path / "runs"),
    )
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["pretrain"]["method"] == method and math.isfinite(ckpt["metrics"]["loss"])
    assert ckpt["state_dict"] and all(k.startswith("backbone.") for k in ckpt["state_dict"])
    # the pretrained backbone goes whole into another task, tensor for tensor
    seg = build_model({**Model("yolo-n", task="segment").config, "num_classes": 2})
    report = load_weights(seg, best)
    assert report.backbone_loaded == 1.0
    own = seg.state_dict()
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(own[k], v), k


def test_pretrain_needs_images(tmp_path):
    from visionkit.pretrain import pretrain

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found 0 images"):
        pretrain(data=str(tmp_path / "empty"), epochs=1, verbose=False, project=str(tmp_path / "runs"))


def test_pretrain_plans_threads_and_workers_as_train_does(unlabelled, tmp_path, capsys):
    """workers= and threads= left automatic (their defaults) are planned from the usable cores and named in the
    header; torch's thread count is the caller's again afterwards."""
    from visionkit.engine.threads import plan_cpus
    from visionkit.pretrain import pretrain

    before = torch.get_num_threads()
    best = pretrain(data=str(unlabelled), method="simclr", epochs=1, imgsz=32, batch=4, verbose=True,
                    project=str(tmp_path / "runs"))  # fmt: skip
    assert best.is_file()
    plan = plan_cpus(None, None, "cpu")
    assert plan.describe() in capsys.readouterr().out
    assert torch.get_num_threads() == before

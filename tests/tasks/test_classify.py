import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, run_cli
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.data.augment import CoarseDropout, classify_transforms, resolve_augment
from visionkit.errors import CheckpointError, DataError, RegistryError
from visionkit.models.checkpoint import load_checkpoint, save_checkpoint
from visionkit.tasks.classify import ClassifyMetrics


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory):
    """One tiny classifier trained on the shapes ImageFolder, reused by the val/predict tests."""
    project = tmp_path_factory.mktemp("runs")
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(shapes_root / "data.yaml"), project=str(project), epochs=1)
    return m


def test_metrics_against_numpy():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(50, 7)), dtype=torch.float32)
    target = torch.tensor(rng.integers(0, 7, 50))
    m = ClassifyMetrics([str(i) for i in range(7)])
    m.update(logits[:20], {"cls": target[:20]})
    m.update(logits[20:], {"cls": target[20:]})
    pred = logits.numpy().argmax(1)
    top5 = np.argsort(-logits.numpy(), 1)[:, :5]
    out = m.compute()
    assert out["top1"] == pytest.approx((pred == target.numpy()).mean())
    assert out["top5"] == pytest.approx(np.mean([t in row for t, row in zip(target.numpy(), top5)]))
    for c in range(7):
        sel = target.numpy() == c
        assert m.per_class()[c] == pytest.approx((pred[sel] == c).mean())


def test_val_and_predict(trained, shapes_root, tmp_path):
    metrics = trained.val(project=str(tmp_path), verbose=False)
    assert set(metrics) >= {"top1", "top5", "val_loss"}
    assert (trained.save_dir / "confusion_matrix.png").is_file()
    imgs = sorted((shapes_root / "images/val").glob("*.jpg"))[:3]
    results = trained.predict(
        str(shapes_root / "images/val/*.jpg"), project=str(tmp_path), save=True, verbose=False, topk=2
    )
    assert len(results) == 8 and all(len(r["top"]) == 2 for r in results)
    # the scores are the network's own softmax, best first: recomputed here from a direct forward pass
    ck = trained.ckpt
    x, _ = trained.task.load_inputs(
        [Path(r["image"]) for r in results], ck["imgsz"], ck["in_channels"], ck["mean"], ck["std"]
    )
    with torch.no_grad():
        probs = trained.net.eval()(x).softmax(1)
    for r, p in zip(results, probs):
        best = p.topk(2)
        assert [t["class"] for t in r["top"]] == best.indices.tolist()
        assert [t["score"] for t in r["top"]] == pytest.approx(best.values.tolist(), abs=1e-4)
    saved = json.loads((trained.save_dir / "predictions.json").read_text())
    assert saved == results
    assert (trained.save_dir / f"{imgs[0].stem}.jpg").is_file()
    # the same image through the CLI gives the same top class
    r = run_cli(
        "classify",
        "predict",
        f"model={trained.ckpt_path}",
        f"source={imgs[0]}",
        f"project={tmp_path / 'cli'}",
        "verbose=false",
    )
    assert r.returncode == 0, r.stderr
    cli = json.loads((tmp_path / "cli/classify/predict/predictions.json").read_text())
    one = [x for x in results if x["image"].endswith(imgs[0].name)][0]
    assert cli[0]["top"][0]["class"] == one["top"][0]["class"]


def _write_idx(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in (("train-images-idx3-ubyte", images), ("t10k-images-idx3-ubyte", images[:8])):
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", *arr.shape) + arr.tobytes())
    for stem, arr in (("train-labels-idx1-ubyte", labels), ("t10k-labels-idx1-ubyte", labels[:8])):
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", len(arr)) + arr.tobytes())


@pytest.mark.parametrize("preset", ["mnist-tiny", "mnist-8k"])
def test_mnist_from_local_idx_files(tmp_path, preset):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 16).astype(np.uint8)
    _write_idx(tmp_path / "mnist", images, labels)
    m = Model(preset)
    metrics = m.train(
        **{**TINY, "imgsz": None}, data="mnist", root=str(tmp_path / "mnist"), project=str(tmp_path), epochs=1
    )
    assert m.ckpt["imgsz"] == 28 and m.ckpt["in_channels"] == 1 and m.ckpt["names"][3] == "3"
    assert m.ckpt["mean"] == [0.1307]
    # val with no data= finds the same IDX files (root= from the training args) and agrees with training
    again = m.val(project=str(tmp_path), verbose=False)
    assert again["top1"] == pytest.approx(metrics["top1"])


def test_mnist_missing_files_names_them(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\[\.gz\].*root=FOLDER"):
        Model("mnist-tiny").train(**TINY, data="mnist", datasets_dir=str(tmp_path), project=str(tmp_path))


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Model("mnist-tiny").train(**TINY, data=str(tmp_path / "nope"), project=str(tmp_path))


def test_empty_class_folder_is_an_error(classify_dir, tmp_path):
    (classify_dir / "train" / "hexagon").mkdir()
    with pytest.raises(DataError, match="hexagon.*Add images or remove the folder"):
        Model("mnist-tiny").train(**TINY, data=str(classify_dir), project=str(tmp_path))


def test_corrupt_image_is_skipped_and_counted(classify_dir, tmp_path):
    bad = classify_dir / "train" / "circle" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    m = Model("mnist-tiny")
    counted = {}
    m.add_callback(
        "on_train_start", lambda t: counted.update(skipped=[p.name for p, _ in t.train_set.skipped], n=len(t.train_set))
    )
    with pytest.warns(UserWarning, match="skipped 1 corrupt image.*broken.jpg"):
        m.train(**TINY, data=str(classify_dir), project=str(tmp_path))
    assert counted == {"skipped": ["broken.jpg"], "n": 16}


def test_checkpoint_from_another_task(trained, tmp_path):
    ckpt = dict(trained.ckpt)
    ckpt["task"] = "segment"
    path = save_checkpoint(ckpt, tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match="trained for task 'segment', not 'classify'"):
        Model(str(path), task="classify")
    r = run_cli("classify", "val", f"model={path}")
    assert r.returncode == 1 and "trained for task 'segment'" in r.stderr and "Traceback" not in r.stderr


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "visionkit-checkpoint", "payload": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    torch.save({"format": "visionkit-checkpoint", "payload": _Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="refused"):
        Model(str(tmp_path / "evil2.pt"))
    assert not (tmp_path / "PWNED").exists()


def test_unknown_model_suggests():
    with pytest.raises(RegistryError, match="Did you mean 'mnist-tiny'"):
        Model("mnist-tiyn")
    r = run_cli("classify", "train", "model=mnist-tiyn")
    assert r.returncode == 2 and "mnist-tiny" in r.stderr and "Traceback" not in r.stderr


def test_preset_of_another_task_names_its_backbone():
    # a preset of another task gives its backbone (with its options) to this task's neck and head
    m = Model("yolo-n", task="classify")
    assert m.config["backbone"]["name"] == "csp_darknet" and m.config["backbone"]["scale"] == "n"
    assert m.config["head"]["name"] == "linear" and m.config["task"] == "classify"
    seg = Model("yolo-n", task="segment").config
    assert seg["backbone"]["out_strides"] == [2, 4, 8, 16, 32] and seg["head"]["name"] == "unet"


def test_augmentations_change_pixels_and_keep_shape():
    torch.manual_seed(0)
    img = torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8)
    # full settings, as the engine passes them: defaults plus these overrides
    args = resolve({"cutout": 1.0, "coarse_dropout": 1.0, "dropout_holes": 4, "dropout_size": 0.2})
    aug = resolve_augment(resolve({"degrees": 10.0}), "photos")
    assert aug["fliplr"] == 0.5 and aug["degrees"] == 10.0
    assert resolve_augment(resolve({}), "digits")["fliplr"] == 0.0
    train_tf = classify_transforms(32, True, aug, args, (0.5,) * 3, (0.25,) * 3)
    val_tf = classify_transforms(32, False, aug, args, (0.5,) * 3, (0.25,) * 3)
    a, b = train_tf(img), val_tf(img)
    assert a.shape == b.shape == (3, 32, 32) and not torch.equal(a, b)
    assert torch.equal(val_tf(img), val_tf(img))  # validation is not random
    holes = CoarseDropout(1.0, max_holes=3, size=0.25)(torch.ones(1, 20, 20))
    zeros = int((holes == 0).sum())
    assert 25 <= zeros <= 3 * 25  # one to three 5×5 holes (they may overlap)


@pytest.mark.parametrize("preset, head", [("cifar-dilated", "bilinear"), ("vit-tiny", "linear")])
def test_other_models_train(classify_dir, tmp_path, preset, head):
    m = Model(preset)
    metrics = m.train(**TINY, data=str(classify_dir), project=str(tmp_path), head=head)
    assert m.ckpt["model_config"]["head"]["name"] == head
    assert type(m.net.head).__name__.lower().startswith(head)  # the checkpoint rebuilds the asked-for head
    # best.pt, reloaded, reproduces the metric training reported: the head's weights survive save and load
    again = m.val(project=str(tmp_path / "val"), verbose=False, plots=False)
    assert again["top1"] == pytest.approx(metrics["top1"], abs=1e-9)
    assert again["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-4)


def test_torchvision_backbone_by_name(classify_dir, tmp_path):
    import torchvision

    m = Model("mobilenet_v3_small")
    m.train(**TINY, data=str(classify_dir), project=str(tmp_path))
    assert m.ckpt["model_config"]["backbone"]["name"] == "mobilenet_v3_small"
    # the network really is torchvision's MobileNetV3 (its inverted residual blocks), not a stand-in
    assert any(isinstance(mod, torchvision.models.mobilenetv3.InvertedResidual) for mod in m.net.modules())
    path = next((classify_dir / "val").rglob("*.jpg"))
    top = m.predict(str(path), verbose=False, project=str(tmp_path))[0]["top"]
    ck = m.ckpt
    x, _ = m.task.load_inputs([path], ck["imgsz"], ck["in_channels"], ck["mean"], ck["std"])
    with torch.no_grad():
        assert top[0]["class"] == int(m.net.eval()(x).argmax(1))

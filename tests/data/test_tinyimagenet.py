"""TinyImageNet's official layout, generated tiny (3 classes of 16×16 JPEGs): names, val labels, a 1-epoch train."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TINY
from visionkit import Model
from visionkit.data import tinyimagenet
from visionkit.errors import DataError

# class order of wnids.txt on purpose not sorted: the order must come from the file
WNIDS = ["n02123045", "n01443537", "n09999999"]
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02123045": "tabby, tabby cat",
    "n09999999": "sock",
    "n00000001": "entity",
}  # words.txt covers all of ImageNet, not just these classes
VAL = [
    ("val_0.JPEG", "n01443537"),
    ("val_1.JPEG", "n09999999"),
    ("val_2.JPEG", "n02123045"),
    ("val_3.JPEG", "n09999999"),
    ("val_4.JPEG", "n01443537"),
    ("val_5.JPEG", "n02123045"),
]


def _jpeg(path: Path, cls: int, rng) -> None:
    img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
    img[..., cls] += 180  # each class has its own dominant colour channel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def make_tinyimagenet(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", c, rng)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # in the official layout, ignored
    rows = []
    for name, wnid in VAL:
        _jpeg(root / "val" / "images" / name, WNIDS.index(wnid), rng)
        rows.append(f"{name}\t{wnid}\t0\t0\t15\t15\n")
    (root / "val" / "val_annotations.txt").write_text("".join(rows))
    return root


def test_names_and_labels_follow_the_official_files(tmp_path):
    make_tinyimagenet(tmp_path / tinyimagenet.TINYIMAGENET_SUBDIR)
    root = tinyimagenet.find_root([tmp_path])  # the folder above tiny-imagenet-200 is enough
    layout = tinyimagenet.read_layout(root)
    assert layout.wnids == WNIDS
    assert layout.names == ["tabby", "goldfish", "sock"]
    val = tinyimagenet.split_samples(layout, "val")
    assert [(p.name, c) for p, c in val] == [(name, WNIDS.index(w)) for name, w in VAL]
    train = tinyimagenet.split_samples(layout, "train")
    assert len(train) == 12 and sorted({c for _, c in train}) == [0, 1, 2]
    assert all(p.parent.name == "images" and p.parent.parent.name == WNIDS[c] for p, c in train)


def test_one_epoch_trains_and_validates(tmp_path):
    root = make_tinyimagenet(tmp_path / "tin")
    m = Model("mnist-tiny")
    metrics = m.train(**TINY, data="tinyimagenet", root=str(root), project=str(tmp_path), epochs=1)
    assert m.ckpt["names"] == ["tabby", "goldfish", "sock"] and m.ckpt["in_channels"] == 3
    again = m.val(project=str(tmp_path / "val"), verbose=False, plots=False)
    assert again["top1"] == pytest.approx(metrics["top1"])
    assert m.val_metrics.count == len(VAL)


@pytest.mark.parametrize(
    "remove, message",
    [
        ("val/val_annotations.txt", r"val_annotations\.txt' is missing \(the validation labels"),
        ("words.txt", r"words\.txt' is missing"),
        ("train/n09999999/images", r"n09999999/images' is missing \(the training images of class n09999999\)"),
        ("val/images/val_3.JPEG", r"val_3\.JPEG' is missing \(named on line 4 of val_annotations\.txt\)"),
    ],
)
def test_missing_pieces_are_named(tmp_path, remove, message):
    import shutil

    root = make_tinyimagenet(tmp_path / "tin")
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=message):
        Model("mnist-tiny").train(**TINY, data="tinyimagenet", root=str(root), project=str(tmp_path))


def test_unknown_wnid_in_annotations_and_no_root(tmp_path):
    root = make_tinyimagenet(tmp_path / "tin")
    ann = root / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_9.JPEG\tn01234567\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="line 7 labels val_9.JPEG as n01234567, which wnids.txt does not list"):
        tinyimagenet.split_samples(tinyimagenet.read_layout(root), "val")
    with pytest.raises(DataError, match=r"wnids\.txt' is missing.*root="):
        Model("mnist-tiny").train(
            **TINY, data="tinyimagenet", datasets_dir=str(tmp_path / "nowhere"), project=str(tmp_path)
        )

"""Semantic segmentation: metrics against a direct computation, scoring at the original resolution, mask sources,
the mask_names rule, bad input, exports and a Label Studio import that trains without a conversion step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.conftest import FIXTURES, TINY, run_cli
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.data.dense import collate
from visionkit.data.format import mask_names, write_data_yaml
from visionkit.errors import DataError
from visionkit.tasks.segment.dataset import SegmentationDataset
from visionkit.tasks.segment.loss import segmentation_loss
from visionkit.tasks.segment.metrics import SegmentMetrics, confusion_matrix, scores
from visionkit.tasks.segment.task import SegmentTask

LS = FIXTURES / "labelstudio"
SEG = {**TINY, "imgsz": 64, "close_mosaic": 0, "device": "cpu"}


def direct_miou(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[float, list[float], float]:
    """mIoU over classes in ground truth or prediction, per-class IoU, pixel accuracy; ignore = 255. Written
    independently of the package, one class at a time."""
    valid = gt != 255
    ious = []
    for c in range(num_classes):
        g, p = (gt == c) & valid, (pred == c) & valid
        union = (g | p).sum()
        ious.append(float((g & p).sum() / union) if union else float("nan"))
    return float(np.nanmean(ious)), ious, float((gt[valid] == pred[valid]).mean())


def test_miou_matches_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (40, 50)).astype(np.uint8)
    gt[:5] = 255  # ignored rows
    pred = np.where(rng.random((40, 50)) < 0.7, gt, rng.integers(0, 4, (40, 50))).astype(np.uint8)
    pred[gt == 255] = 1  # whatever is predicted on ignored pixels does not count
    gt[gt == 3] = 0  # class 3 only in predictions; class 4 in neither
    metrics = SegmentMetrics(["a", "b", "c", "d", "e"], lambda outputs, metas: outputs)
    metrics.update([pred[:20], pred[20:]], {"meta": [{"gt": gt[:20]}, {"gt": gt[20:]}]})
    m = metrics.compute()
    miou, ious, acc = direct_miou(gt, pred, 5)
    assert m["mIoU"] == pytest.approx(miou, abs=1e-12) and m["pixel_acc"] == pytest.approx(acc, abs=1e-12)
    s = scores(metrics.confusion)
    assert np.allclose(s["iou"], ious, equal_nan=True)
    assert np.isnan(s["iou"][4]) and s["iou"][3] == 0.0  # absent from both: not averaged; predicted only: 0
    assert confusion_matrix(gt, pred, 5).sum() == (gt != 255).sum()
    assert "mean over classes present" in metrics.table()


def mask_dataset(root: Path, sizes=((60, 40), (40, 60), (64, 64))) -> Path:
    """Images of several sizes with masks (a filled rectangle of class 1 and a circle of class 2), a val split."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : h // 2, w // 5 : w // 2] = 1
            cv2.circle(mask, (3 * w // 4, 3 * h // 4), min(w, h) // 6, 2, -1)
            img = np.full((h, w, 3), 40, np.uint8)
            img[mask == 1] = (0, 0, 255)
            img[mask == 2] = (255, 0, 0)
            cv2.imwrite(str(root / "images" / split / f"{k}.png"), img)
            cv2.imwrite(str(root / "masks" / split / f"{k}.png"), mask)
    write_data_yaml(
        root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "names": ["red", "blue"]}
    )
    return root / "data.yaml"


def val_dataset(root: Path, num_classes=3, imgsz=64, **kw) -> SegmentationDataset:
    files = sorted((root / "images/val").glob("*.png"))
    return SegmentationDataset(files, num_classes, imgsz, False, resolve({}).replace(**kw), verbose=False)


def test_scores_are_computed_at_the_original_resolution(tmp_path):
    """Perfect logits for the letterboxed input give exactly the original masks back (not the network's)."""
    mask_dataset(tmp_path / "d")
    ds = val_dataset(tmp_path / "d", imgsz=128)  # 60×40 → 128×85 content: an upscale with rounding
    ds.prepare_batches(3)
    imgs, masks, metas = collate([ds[i] for i in range(len(ds))])
    logits = F.one_hot(masks.long().clamp(max=2), 3).permute(0, 3, 1, 2).float() * 10
    maps = SegmentTask.class_maps(logits, metas)
    for m, meta in zip(maps, metas):
        assert m.shape == meta["gt"].shape
        assert (m == meta["gt"]).mean() > 0.97  # only boundary pixels may move in the bilinear resize
    exact = val_dataset(tmp_path / "d", imgsz=64, rect=False)  # 64×64 stays 64×64: pixel-exact
    img, mask, meta = exact[2]
    back = SegmentTask.class_maps(F.one_hot(mask.long(), 3).permute(2, 0, 1)[None].float(), [meta])[0]
    assert np.array_equal(back, meta["gt"])


def test_polygons_are_rasterised_and_images_without_labels_are_skipped(tmp_path):
    root = tmp_path / "p"
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    for name in ("poly", "empty", "none", "boxes"):
        cv2.imwrite(str(root / f"images/val/{name}.png"), np.zeros((40, 40, 3), np.uint8))
    (root / "labels/val/poly.txt").write_text("1 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    (root / "labels/val/empty.txt").write_text("")
    (root / "labels/val/boxes.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.warns(UserWarning, match="skipped 2 of 4 image") as caught:
        ds = val_dataset(root, rect=False)
    message = str(caught[0].message)
    assert "1 no mask and no label file" in message and "1 box rows only" in message
    assert [f.stem for f in ds.files] == ["empty", "poly"]
    assert ds.original(0).max() == 0  # an empty label file is a background image
    poly = ds.original(1)
    assert set(np.unique(poly)) == {0, 2} and poly[10:30, 10:30].min() == 2 and poly[:10].max() == 0


def test_the_mask_names_rule():
    assert mask_names({"names": ["cat", "dog"]}) == ["background", "cat", "dog"]
    assert mask_names({"names": ["background", "road"]}) == ["background", "road"]
    assert mask_names({"names": ["cat"], "mask_names": {0: "void", 1: "cat"}}) == ["void", "cat"]


def test_data_check_and_segment_follow_the_same_rule(tmp_path):
    data = mask_dataset(tmp_path / "d")
    cv2.imwrite(str(tmp_path / "d/masks/val/0.png"), np.full((40, 60), 3, np.uint8))  # 3 = no class
    r = run_cli("data", "check", f"data={data}")
    assert r.returncode == 1 and "mask values [3]" in r.stdout
    with pytest.raises(DataError, match=r"holds value 3, but there are only 3 mask classes"):
        val_dataset(tmp_path / "d", rect=False)[0]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("size", r"is 30×20 but its image .* is 60×40"),
        ("rgb", "is an RGB image; a mask must be a single-channel 8-bit PNG"),
        ("16bit", "is a 16-bit image"),
    ],
)
def test_bad_masks_are_clear_errors(tmp_path, kind, message):
    mask_dataset(tmp_path / "d")
    path = tmp_path / "d/masks/val/0.png"
    if kind == "size":
        cv2.imwrite(str(path), np.zeros((20, 30), np.uint8))
    elif kind == "rgb":
        cv2.imwrite(str(path), np.zeros((40, 60, 3), np.uint8))
    else:
        Image.fromarray(np.zeros((40, 60), np.uint16)).save(path)
    with pytest.raises(DataError, match=message):
        val_dataset(tmp_path / "d")


def test_a_mask_without_its_image_is_counted(tmp_path):
    mask_dataset(tmp_path / "d")
    cv2.imwrite(str(tmp_path / "d/masks/val/lonely.png"), np.zeros((8, 8), np.uint8))
    with pytest.warns(UserWarning, match="1 mask\\(s\\) have no image"):
        ds = val_dataset(tmp_path / "d")
    assert len(ds) == 3 and ds.orphans[0].name == "lonely.png"


def test_loss_ignores_255_and_dice_adds():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    ignored = target.clone()
    ignored[:, :4] = 255
    ce_only, _ = segmentation_loss(logits, ignored)
    expected = F.cross_entropy(logits[:, :, 4:], target[:, 4:])
    assert float(ce_only) == pytest.approx(float(expected), rel=1e-5)
    with_dice, parts = segmentation_loss(logits, ignored, dice=0.5)
    assert float(with_dice) == pytest.approx(float(ce_only) + 0.5 * parts["dice"], rel=1e-5)
    all_ignored, _ = segmentation_loss(logits, torch.full_like(target, 255), dice=0.5)
    assert float(all_ignored) == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny segmenter trained on masks of mixed image sizes."""
    root = tmp_path_factory.mktemp("seg")
    data = mask_dataset(root / "d")
    m = Model("unet-n", task="segment")
    m.train(data=str(data), epochs=2, project=str(root / "runs"), **SEG)
    return m, data, root


def test_predict_saves_masks_overlays_and_areas(trained, tmp_path):
    m, data, root = trained
    src = root / "d/images/val"
    results = m.predict(str(src), save=True, save_masks=True, project=str(tmp_path), **SEG)
    for r in results:
        stem = Path(r["image"]).stem
        saved = cv2.imread(str(m.save_dir / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert saved.shape == (r["height"], r["width"]) and np.array_equal(saved, r["_mask"])
        assert sum(a["pixels"] for a in r["classes"]) == r["width"] * r["height"]
        assert (m.save_dir / f"{stem}.jpg").is_file()
    written = json.loads((m.save_dir / "predictions.json").read_text())
    assert "_mask" not in written[0] and written[0]["classes"] == results[0]["classes"]


def test_video_frames_get_one_mask_each(trained, tmp_path):
    m, data, root = trained
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    for k in range(3):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[10:30, 8 + 10 * k : 28 + 10 * k] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    results = m.predict(str(video), save=True, save_masks=True, project=str(tmp_path / "p"), **SEG)
    assert [r["image"] for r in results] == [f"{video}#{k}" for k in range(3)]
    assert sorted(p.name for p in (m.save_dir / "masks").glob("*.png")) == ["clip_0.png", "clip_1.png", "clip_2.png"]
    assert (m.save_dir / "clip.mp4").is_file()


def test_argmax_export_gives_the_same_miou(trained):
    m, data, root = trained
    common = {**SEG, "data": str(data)}
    pt = m.val(**common)
    path = m.export(argmax=True, dynamic=True)
    ort = Model(str(path)).val(**common)
    assert ort["mIoU"] == pytest.approx(pt["mIoU"], abs=1e-3)


def test_wrong_model_or_export_option_is_a_clear_error(trained, tmp_path):
    m, data, root = trained
    r = run_cli("detect", "val", f"model={m.ckpt_path}", f"data={data}")
    assert r.returncode == 1 and "trained for task 'segment', not 'detect'" in r.stderr, r.stderr
    r = run_cli("export", f"model={m.ckpt_path}", "nms=True")
    assert r.returncode == 2 and "'nms'. It is a setting of the detect and instance tasks" in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["polygon", "brush"])
def test_a_label_studio_import_trains_directly(tmp_path, kind):
    """Import a real Label Studio export (polygons or brush) with the CLI, then train one epoch on it."""
    config = tmp_path / "config.xml"
    config.write_text(json.loads((LS / "label_configs.json").read_text())[kind])
    src = tmp_path / "export.json"
    shutil.copy(LS / f"{kind}_JSON.json", src)
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={src}",
        f"images={LS / 'images'}",
        f"out={tmp_path / 'ds'}",
        f"config={config}",
        "val=0",
    )
    assert r.returncode == 0, r.stderr
    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "ds/masks/train").glob("*.png")]
    assert masks and max(int(m.max()) for m in masks) >= 1  # the regions became mask classes
    args = [f"{k}={v}" for k, v in SEG.items()]
    r = run_cli(
        "segment",
        "train",
        f"data={tmp_path / 'ds/data.yaml'}",
        "epochs=1",
        "val=false",
        f"project={tmp_path / 'runs'}",
        *args,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = torch.load(tmp_path / "runs/segment/train/weights/best.pt", weights_only=True)
    assert ckpt["names"][0] == "background" and len(ckpt["names"]) >= 2

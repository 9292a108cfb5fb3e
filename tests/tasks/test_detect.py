import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import TINY, mixed_aspect_dataset, run_cli
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.data.format import read_label_file
from visionkit.errors import DataError
from visionkit.registry import REGISTRY
from visionkit.tasks.detect.dataset import DetectionDataset, collate, load_labels
from visionkit.tasks.detect.loss import TaskAlignedAssigner, ciou, dfl
from visionkit.tasks.detect.metrics import DetectMetrics, coco_eval
from visionkit.tasks.detect.task import DetectTask, nms

DET = {**TINY, "imgsz": 64, "close_mosaic": 0}


def test_ciou_and_dfl():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    c = ciou(a, b)
    assert c[0] == pytest.approx(1.0, abs=1e-5) and c[1] < 0  # disjoint boxes are penalised by distance
    logits = torch.full((1, 4, 16), -20.0)
    logits[..., 3] = logits[..., 4] = 20.0
    # a target halfway between bins 3 and 4 costs log 2 at best
    assert torch.allclose(dfl(logits, torch.full((1, 4), 3.5)), torch.full((1, 4), np.log(2)), atol=1e-4)


def test_assigner_picks_anchors_inside_the_box():
    points = torch.tensor([[5.0, 5], [15, 5], [25, 5], [35, 5]])
    scores = torch.full((1, 4, 2), 0.5)
    boxes = torch.tensor([[[0.0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]]])
    gt = torch.tensor([[[0.0, 0, 20, 10]]])
    t_boxes, t_scores, fg, gt_idx = TaskAlignedAssigner(topk=10)(
        scores, boxes, points, torch.tensor([[1.0]]), gt, torch.tensor([[True]])
    )
    assert fg.tolist() == [[True, True, False, False]] and gt_idx[0, :2].tolist() == [0, 0]
    assert t_scores[0, :2, 1].gt(0).all() and t_scores[0, :, 0].eq(0).all()
    assert torch.equal(t_boxes[0, 0], gt[0, 0])


def test_nms_is_class_aware_and_filters():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]]])
    scores = torch.tensor([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.1, 0.0]]])
    ((b, s, c),) = nms(boxes, scores, conf=0.25, iou=0.5, max_det=10)
    assert s.tolist() == pytest.approx([0.9, 0.7]) and c.tolist() == [0, 1]  # same-class overlap suppressed
    ((b, s, c),) = nms(boxes, scores, conf=0.25, iou=0.5, max_det=10, classes=[1])
    assert c.tolist() == [1]
    ((b, s, c),) = nms(boxes, scores, conf=0.05, iou=0.5, max_det=1)
    assert len(s) == 1


def _metrics_for(dets_per_image, gts):
    """DetectMetrics fed with hand-made detections (original-pixel boxes) through its postprocess hook."""
    m = DetectMetrics(["a", "b"], postprocess=lambda outputs, metas: outputs)
    metas = [{"shape": (100, 200), "file": f"{i}.jpg", "gt": gt} for i, gt in enumerate(gts)]
    m.update(dets_per_image, {"meta": metas})
    return m


def test_map_matches_known_values_and_cocoeval_run_directly(tmp_path):
    gt = np.array([[0, 0.25, 0.5, 0.2, 0.4], [1, 0.7, 0.5, 0.3, 0.6]], np.float32)  # 200×100 image
    exact = {
        "boxes": np.array([[30.0, 30, 70, 70], [110, 20, 170, 80]]),
        "scores": np.array([0.9, 0.8]),
        "classes": np.array([0, 1]),
    }
    m = _metrics_for([exact], [gt])
    assert m.compute()["mAP50-95"] == pytest.approx(1.0) and m.compute()["mAP50"] == pytest.approx(1.0)
    # shift the first box so its IoU is 0.6: it counts at thresholds .50, .55, .60 only (3 of 10)
    shifted = dict(exact, boxes=np.array([[30.0 + 10, 30, 70 + 10, 70], [110, 20, 170, 80]]))
    m = _metrics_for([shifted], [gt])
    out = m.compute()
    assert out["mAP50"] == pytest.approx(1.0)
    assert out["mAP50-95"] == pytest.approx((0.3 + 1.0) / 2, abs=1e-6)
    # the same numbers from COCOeval run directly on files written from the same predictions
    m.plot(tmp_path)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_coco = COCO(str(tmp_path / "ground_truth_coco.json"))
    ev = COCOeval(gt_coco, gt_coco.loadRes(str(tmp_path / "predictions_coco.json")), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(out["mAP50-95"]) and ev.stats[1] == pytest.approx(out["mAP50"])
    assert (tmp_path / "pr_curve.png").is_file() and (tmp_path / "confusion_matrix.png").is_file()
    assert m.confusion[0, 0] == 1 and m.confusion[1, 1] == 1


def test_empty_predictions_score_zero():
    gt = np.array([[0, 0.5, 0.5, 0.2, 0.2]], np.float32)
    none = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0)}
    assert _metrics_for([none], [gt]).compute()["mAP50-95"] == 0.0
    assert coco_eval({"images": [], "annotations": [], "categories": []}, []).stats[0] <= 0


def _dataset(shapes_root, tmp_path, train=True, **kw):
    root = tmp_path / "ds"
    if not root.exists():
        shutil.copytree(shapes_root, root, ignore=shutil.ignore_patterns("classify", "*.cache.json"))
    files = sorted((root / "images/train").glob("*.jpg"))
    args = resolve({}).replace(mosaic=1.0, degrees=5.0, translate=0.1, scale=0.5, fliplr=0.5, flipud=0.0, **kw)
    return root, DetectionDataset(
        files, ["circle", "square", "triangle", "star"], 64, train, args, cache_dir=root / "labels/train", verbose=False
    )


def test_augmented_samples_keep_boxes_inside(shapes_root, tmp_path):
    torch.manual_seed(0)
    _, ds = _dataset(shapes_root, tmp_path, mixup=0.5, cutout=0.5)
    batch = collate([ds[i] for i in range(8)])
    imgs, targets, _ = batch
    assert imgs.shape == (8, 3, 64, 64) and imgs.dtype == torch.uint8
    assert targets.shape[1] == 6 and len(targets) > 0
    xy = targets[:, 2:]
    assert (xy[:, 0] - xy[:, 2] / 2 >= -1e-4).all() and (xy[:, 0] + xy[:, 2] / 2 <= 1 + 1e-4).all()
    assert (xy[:, 2:] > 0).all()


def test_letterbox_metadata_maps_back_exactly(shapes_root, tmp_path):
    _, ds = _dataset(shapes_root, tmp_path, train=False)
    img, targets, meta = ds[0]
    h0, w0 = meta["shape"]
    s = 64
    xyxy = torch.stack(
        [
            (targets[:, 1] - targets[:, 3] / 2) * s,
            (targets[:, 2] - targets[:, 4] / 2) * s,
            (targets[:, 1] + targets[:, 3] / 2) * s,
            (targets[:, 2] + targets[:, 4] / 2) * s,
        ],
        1,
    )
    back = DetectTask._to_original(xyxy, torch.ones(len(xyxy)), torch.zeros(len(xyxy)), meta)["boxes"]
    gt = meta["gt"]
    expected = np.c_[
        (gt[:, 1] - gt[:, 3] / 2) * w0,
        (gt[:, 2] - gt[:, 4] / 2) * h0,
        (gt[:, 1] + gt[:, 3] / 2) * w0,
        (gt[:, 2] + gt[:, 4] / 2) * h0,
    ]
    assert np.allclose(back, expected, atol=1e-3)


def test_label_cache_is_reused_and_rebuilt_on_change(shapes_root, tmp_path):
    root, ds = _dataset(shapes_root, tmp_path)
    assert not ds.from_cache and (root / "labels/train/labels.cache.json").is_file()
    _, again = _dataset(shapes_root, tmp_path)
    assert again.from_cache
    label = root / "labels/train/00000.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    _, changed = _dataset(shapes_root, tmp_path)
    assert not changed.from_cache and len(changed.labels[0]) == len(ds.labels[0]) + 1


def test_bad_labels(shapes_root, tmp_path):
    root, _ = _dataset(shapes_root, tmp_path)
    files = sorted((root / "images/train").glob("*.jpg"))
    (root / "labels/train/00001.txt").write_text("0 1.2 0.5 0.4 0.2\n1 0.5 0.5 0 0.3\n")  # out of range, zero size
    (root / "labels/train/00002.txt").write_text("")  # background image
    (root / "images/train/00003.jpg").write_bytes(b"broken")
    info = load_labels(files, 4, None)
    assert info["fixed"] >= 1 and info["dropped"] >= 1
    assert [Path_.split("/")[-1] for Path_, _ in info["skipped"]] == ["00003.jpg"]
    assert len(info["files"]) == len(files) - 1 and len(info["labels"][1]) == 0  # 00002: no boxes
    (root / "labels/train/00004.txt").write_text("9 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"00004.txt:1: class id 9 is outside 0..3"):
        load_labels(files, 4, None)


def test_no_val_split_is_a_clear_error(shapes_root, tmp_path):
    root, _ = _dataset(shapes_root, tmp_path)
    text = (root / "data.yaml").read_text().replace("val: images/val\n", "")
    (root / "data.yaml").write_text(text)
    with pytest.raises(DataError, match="no 'val' split"):
        Model("yolo-n").train(**DET, data=str(root / "data.yaml"), project=str(tmp_path))


def test_train_val_predict_end_to_end(shapes_root, tmp_path):
    m = Model("yolo-n")
    metrics = m.train(**{**DET, "plots": True}, data=str(shapes_root / "data.yaml"), project=str(tmp_path), epochs=1)
    run = m.save_dir
    for f in ("train_batch0.jpg", "results.csv", "pr_curve.png", "confusion_matrix.png", "weights/best.pt"):
        assert (run / f).is_file(), f
    assert {"mAP50-95", "mAP50", "precision", "recall"} <= set(metrics)
    again = m.val(project=str(tmp_path), verbose=False, plots=False)
    assert again["mAP50-95"] == pytest.approx(metrics["mAP50-95"], abs=1e-6)

    images = sorted((shapes_root / "images/val").glob("*.jpg"))[:3]
    res = m.predict(
        [str(p) for p in images], project=str(tmp_path), save=True, save_txt=True, conf=0.0, max_det=5, verbose=False
    )
    assert len(res) == 3 and all(len(r["detections"]) <= 5 for r in res)
    assert all(0 <= d["box"][0] <= d["box"][2] <= r["width"] for r in res for d in r["detections"])
    assert (m.save_dir / f"{images[0].stem}.jpg").is_file()
    rows = (m.save_dir / "labels" / f"{images[0].stem}.txt").read_text().splitlines()
    assert len(rows) == len(res[0]["detections"])

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (48, 48))
    for p in images:
        writer.write(cv2.imread(str(p)))
    writer.release()
    r = run_cli(
        "detect",
        "predict",
        f"model={m.ckpt_path}",
        f"source={video}",
        "save",
        "conf=0.01",
        f"project={tmp_path / 'cli'}",
        "verbose=false",
    )
    assert r.returncode == 0, r.stderr
    frames = json.loads((tmp_path / "cli/detect/predict/predictions.json").read_text())
    assert [f["image"] for f in frames] == [f"{video}#{i}" for i in range(3)]
    assert (tmp_path / "cli/detect/predict/clip.mp4").stat().st_size > 0


@pytest.mark.parametrize("backbone, neck", [("mobilenet_v3_small", "pan"), ("csp_darknet", "fpn"), ("resnet18", "pan")])
def test_any_backbone_and_neck(shapes_root, tmp_path, backbone, neck):
    m = Model("yolo-n")
    m.train(
        **DET, data=str(shapes_root / "data.yaml"), project=str(tmp_path), backbone=backbone, neck=neck, fraction=0.5
    )
    cfg = m.ckpt["model_config"]
    assert cfg["backbone"]["name"] == backbone and cfg["neck"]["name"] == neck
    # the network built from the checkpoint has those parts, and they reach the head at every stride it reads
    fresh = {
        "backbone": type(
            REGISTRY.build("backbone", backbone, **{k: v for k, v in cfg["backbone"].items() if k != "name"})
        ),
        "neck": {"pan": "PANNeck", "fpn": "FPNNeck"}[neck],
    }
    assert type(m.net.backbone) is fresh["backbone"] and type(m.net.neck).__name__ == fresh["neck"]
    with torch.no_grad():
        outs = m.net.eval()(torch.zeros(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [64 // s for s in m.net.head.strides]


def test_loss_falls_when_overfitting_one_batch(shapes_root, tmp_path):
    torch.manual_seed(0)
    _, ds = _dataset(shapes_root, tmp_path, train=False)
    batch = collate([ds[i] for i in range(4)])
    m = Model("yolo-n")
    m.config["num_classes"] = 4
    net = m.net.train()
    task = DetectTask()
    task.bind(net)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    b = task.preprocess_batch(batch, torch.device("cpu"))
    losses = []
    for _ in range(15):
        loss, _ = task.loss(net(b["img"]), b, resolve({}, task.keys))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_polygon_labels_become_boxes(shapes_root, tmp_path):
    label = next((shapes_root / "labels/train").glob("*.txt"))
    rows = read_label_file(label)
    assert all(len(c) > 4 for _, c in rows)  # shapes stores polygons; the detector reads their extents
    image = next(p for p in (shapes_root / "images/train").iterdir() if p.stem == label.stem)
    ds = DetectionDataset(
        [image], ["circle", "square", "triangle", "star"], 64, False, resolve({"rect": False}), verbose=False
    )
    for (cls, coords), target in zip(rows, ds.labels[0]):  # class, then the polygon's extent as cx cy w h
        xs, ys = coords[0::2], coords[1::2]
        expected = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
        assert int(target[0]) == cls and np.allclose(target[1:], expected, atol=1e-6)


def test_rect_validation_batches_are_snug_and_map_back_exactly(tmp_path):
    from visionkit.engine.setup import make_loader

    files = mixed_aspect_dataset(tmp_path)
    ds = DetectionDataset(files, ["box"], 64, False, resolve({"rect": True}), verbose=False)
    loader = make_loader(ds, 2, 0, False, torch.device("cpu"), collate)
    shapes = [tuple(imgs.shape[-2:]) for imgs, _, _ in loader]
    assert shapes == [(32, 64), (64, 64), (64, 32)]  # landscape 2:1 pair, the 4:3 pair, the portrait pair
    for imgs, targets, metas in loader:
        h, w = imgs.shape[-2:]
        for i, meta in enumerate(metas):
            t = targets[targets[:, 0] == i][0]
            xyxy = torch.tensor(
                [[(t[2] - t[4] / 2) * w, (t[3] - t[5] / 2) * h, (t[2] + t[4] / 2) * w, (t[3] + t[5] / 2) * h]]
            )
            inside = imgs[i, :, int(xyxy[0, 1]) + 1 : int(xyxy[0, 3]) - 1, int(xyxy[0, 0]) + 1 : int(xyxy[0, 2]) - 1]
            assert inside.float().mean() > 200  # the target lies on the white box
            back = DetectTask._to_original(xyxy, torch.ones(1), torch.zeros(1), meta)["boxes"][0]
            h0, w0 = meta["shape"]
            g = meta["gt"][0]
            expected = [(g[1] - g[3] / 2) * w0, (g[2] - g[4] / 2) * h0, (g[1] + g[3] / 2) * w0, (g[2] + g[4] / 2) * h0]
            assert np.allclose(back, expected, atol=1e-3)
    square = DetectionDataset(files, ["box"], 64, False, resolve({"rect": False}), verbose=False)
    square_loader = make_loader(square, 2, 0, False, torch.device("cpu"), collate)
    assert {tuple(imgs.shape[-2:]) for imgs, _, _ in square_loader} == {(64, 64)}


def test_rect_prediction_inputs_are_snug():
    wide, tall = np.zeros((48, 128, 3), np.uint8), np.zeros((64, 30, 3), np.uint8)
    task = DetectTask()
    assert task.load_inputs([wide], 64, 3, None, None, rect=True)[0].shape == (1, 3, 32, 64)  # 128×48 → 64×24
    assert task.load_inputs([tall], 64, 3, None, None, rect=True)[0].shape == (1, 3, 64, 32)
    assert task.load_inputs([wide, tall], 64, 3, None, None, rect=True)[0].shape == (2, 3, 64, 64)  # mixed: square
    assert task.load_inputs([wide], 64, 3, None, None)[0].shape == (1, 3, 64, 64)

"""Instance segmentation: mask mAP against hand-computed IoUs, masks mapped back through the letterbox, the
instances/ sidecar through the dataset and its augmentation, the loss, and a run from training to ONNX."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import TINY
from visionkit import Model
from visionkit.data.instances import ImageObjects, encode_mask, rle, write_instances
from visionkit.data.transforms import letterbox
from visionkit.tasks.instance.dataset import InstanceDataset, collate, objects_from_ids
from visionkit.tasks.instance.loss import box_crop
from visionkit.tasks.instance.masks import assemble, polygons, to_rle
from visionkit.tasks.instance.metrics import InstanceMetrics

INST = {**TINY, "imgsz": 64, "close_mosaic": 0, "epochs": 1}


def _ring(h, w, box, hole) -> np.ndarray:
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    hx1, hy1, hx2, hy2 = hole
    m[hy1:hy2, hx1:hx2] = False
    return m


def _metrics_for(gt_masks, gt_classes, preds, crowd=()):
    """InstanceMetrics over one 40×50 image: ``preds`` are (mask, score, class)."""
    h, w = gt_masks[0].shape
    objects = ImageObjects(
        np.asarray(gt_classes),
        [rle(encode_mask(m), h, w) for m in gt_masks],
        [(c, rle(encode_mask(m), h, w)) for c, m in crowd],
    )

    def post(outputs, metas):
        boxes = np.array([cv2.boundingRect(m.astype(np.uint8)) for m, _, _ in preds], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return [
            {
                "boxes": boxes,
                "scores": np.array([s for _, s, _ in preds], np.float32),
                "classes": np.array([c for _, _, c in preds]),
                "rles": [to_rle(m) for m, _, _ in preds],
            }
        ]

    metrics = InstanceMetrics(["a", "b"], post)
    metrics.update(None, {"meta": [{"shape": (h, w), "file": "x.jpg", "objects": objects}]})
    return metrics.compute()


def test_mask_map_matches_hand_computed_iou_with_holes():
    h, w = 40, 50
    ring = _ring(h, w, (5, 5, 35, 35), (12, 12, 28, 28))  # a square with a hole: 900 - 256 = 644 pixels
    filled = _ring(h, w, (5, 5, 35, 35), (0, 0, 0, 0))  # the prediction fills the hole
    iou = (ring & filled).sum() / (ring | filled).sum()
    assert iou == pytest.approx(644 / 900)
    # one object, one prediction: AP at a threshold is 1 when the IoU reaches it, else 0
    expected = np.mean([iou >= t for t in np.linspace(0.5, 0.95, 10)])
    result = _metrics_for([ring], [0], [(filled, 0.9, 0)])
    assert result["mask_mAP50-95"] == pytest.approx(expected, abs=1e-6)
    assert result["mask_mAP50"] == pytest.approx(1.0)
    assert result["box_mAP50-95"] == pytest.approx(1.0)  # the boxes are equal: the hole is inside
    # the exact ring scores 1; a prediction of the wrong class scores 0
    assert _metrics_for([ring], [0], [(ring, 0.9, 0)])["mask_mAP50-95"] == pytest.approx(1.0)
    assert _metrics_for([ring], [0], [(ring, 0.9, 1)])["mask_mAP50-95"] == pytest.approx(0.0)


def test_crowd_regions_are_ignored_not_missed():
    h, w = 40, 50
    obj = _ring(h, w, (2, 2, 20, 20), (0, 0, 0, 0))
    crowd = _ring(h, w, (25, 5, 48, 38), (0, 0, 0, 0))
    # a detection on the crowd region is neither a false positive nor a miss
    result = _metrics_for([obj], [0], [(obj, 0.9, 0), (crowd, 0.95, 0)], crowd=[(0, crowd)])
    assert result["mask_mAP50-95"] == pytest.approx(1.0)
    without = _metrics_for([obj], [0], [(obj, 0.9, 0), (crowd, 0.95, 0)])
    assert without["mask_mAP50-95"] < 0.9  # the same detection without the crowd region is a false positive


def test_assemble_undoes_the_letterbox():
    h0, w0 = 60, 100
    truth = np.zeros((h0, w0), bool)
    truth[20:50, 30:80] = True
    lb, r, (left, top) = letterbox(truth.astype(np.uint8) * 255, 64)
    ph = pw = 16  # prototypes at 1/4 of the 64 px input
    proto = cv2.resize(lb.astype(np.float32) / 255, (pw, ph), interpolation=cv2.INTER_AREA)
    protos = torch.from_numpy((proto - 0.5) * 20)[None]  # one prototype: +10 inside, -10 outside
    coef = torch.ones(1, 1)
    box = np.array([[0, 0, w0, h0]], np.float32)
    masks = assemble(coef, protos, box, (h0, w0), (r, r), (left, top), (64, 64))
    assert masks.shape == (1, h0, w0)
    iou = (masks[0] & truth).sum() / (masks[0] | truth).sum()
    assert iou > 0.85
    # the box crops: a box over the left half keeps only that part
    half = assemble(coef, protos, np.array([[0, 0, 50, h0]], np.float32), (h0, w0), (r, r), (left, top), (64, 64))
    assert not half[0][:, 50:].any() and half[0][:, :50].sum() > 0.8 * truth[:, :50].sum()


def test_rle_and_polygon_forms_of_a_mask():
    m = _ring(30, 40, (5, 5, 25, 25), (10, 10, 20, 20))
    r = to_rle(m)
    assert r["size"] == [30, 40] and isinstance(r["counts"], str)
    from pycocotools import mask as mask_utils

    assert (mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()}) == m).all()
    two = np.zeros((30, 40), bool)
    two[2:8, 2:8] = True
    two[10:25, 20:38] = True
    outlines = polygons(two)
    assert len(outlines) == 2 and cv2.contourArea(outlines[0].astype(np.float32)) > cv2.contourArea(
        outlines[1].astype(np.float32)
    )


def test_box_crop_is_one_inside_the_box_only():
    crop = box_crop(torch.tensor([[1.0, 2.0, 4.0, 3.0]]), 5, 6)[0]
    expected = torch.zeros(5, 6)
    expected[2:3, 1:4] = 1
    assert torch.equal(crop, expected)


def test_objects_from_ids_drops_slivers_and_keeps_classes():
    ids = np.zeros((16, 16), np.uint16)
    ids[2:10, 2:6] = 1
    ids[12:13, 0:16] = 2  # one pixel high: dropped
    ids[4:8, 10:14] = 3
    boxes, masks = objects_from_ids(ids, np.array([5, 6, 7]), ratio=4)
    assert boxes.tolist() == [[5, 2, 2, 6, 10], [7, 10, 4, 14, 8]]
    assert masks.shape == (2, 4, 4) and masks.dtype == np.uint8
    assert masks[0].sum() == pytest.approx(32 * 255 / 16, abs=2)  # area-averaged coverage


@pytest.fixture
def holed_dataset(tmp_path):
    """Two 64×64 images: a ring (exact mask in instances/) touching a polygon square, and a two-piece object."""
    root = tmp_path / "holed"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    img = np.full((64, 64, 3), 90, np.uint8)
    ring = _ring(64, 64, (8, 8, 40, 40), (18, 18, 30, 30))
    two = np.zeros((64, 64), bool)
    two[45:60, 5:20] = True
    two[45:60, 40:60] = True
    for split in ("train", "val"):
        cv2.imwrite(str(root / "images" / split / "a.png"), img)
        (root / "labels" / split / "a.txt").write_text(
            "0 0.375000 0.375000 0.500000 0.500000\n"  # ring as its box row; exact pixels in the sidecar
            "1 0.625000 0.125000 0.937500 0.125000 0.937500 0.625000 0.625000 0.625000\n"  # square touching it
            "0 0.507812 0.820312 0.859375 0.234375\n"  # two pieces, box row
        )
        write_instances(root / "instances" / split / "a.json", 64, 64, {1: ring, 3: two})
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [ring, square]\n")
    return root, ring, two


def test_dataset_reads_exact_masks_and_polygons(holed_dataset):
    from visionkit.cfg import resolve
    from visionkit.tasks.instance.task import InstanceTask

    root, ring, two = holed_dataset
    args = resolve({"imgsz": 64, "rect": False}, InstanceTask.keys)
    files = [root / "images" / "val" / "a.png"]
    ds = InstanceDataset(files, ["ring", "square"], 64, False, args, None, False)
    objects = ds.objects[0]
    assert objects.classes.tolist() == [0, 1, 0]
    from pycocotools import mask as mask_utils

    assert (mask_utils.decode(objects.rles[0]).astype(bool) == ring).all()
    assert (mask_utils.decode(objects.rles[2]).astype(bool) == two).all()
    img, targets, masks, meta = ds[0]
    assert len(targets) == 3 and masks.shape == (3, 16, 16)
    # the ring keeps its hole in the training target: the centre of the 1/4 mask is empty, its border full
    order = np.argsort(targets[:, 1].numpy() + targets[:, 2].numpy())
    ring_mask = masks[order[0]].numpy()
    assert ring_mask[6, 6] == 0 and ring_mask[3, 3] == 255
    batch = collate([ds[0], ds[0]])
    assert batch[1][:, 0].tolist() == [0, 0, 0, 1, 1, 1] and batch[2].shape == (6, 16, 16)


def test_training_augmentation_moves_masks_with_their_boxes(holed_dataset):
    from visionkit.cfg import resolve
    from visionkit.tasks.instance.task import InstanceTask
    from visionkit.tasks.shared import joint_augment_args

    root, _, _ = holed_dataset
    args = joint_augment_args(resolve({"imgsz": 64, "mosaic": 1.0, "degrees": 10.0}, InstanceTask.keys))
    files = [root / "images" / "train" / "a.png"]
    ds = InstanceDataset(files, ["ring", "square"], 64, True, args, None, False)
    torch.manual_seed(0)
    for _ in range(6):
        img, targets, masks, _ = ds[0]
        assert img.shape == (3, 64, 64) and len(targets) == len(masks)
        for t, m in zip(targets.numpy(), masks.numpy()):
            ys, xs = np.nonzero(m > 0)
            # every mask lies within its box (at 1/4 scale, one cell of rounding)
            x1, y1 = (t[1] - t[3] / 2) * 16, (t[2] - t[4] / 2) * 16
            x2, y2 = (t[1] + t[3] / 2) * 16, (t[2] + t[4] / 2) * 16
            assert xs.min() >= x1 - 1 and xs.max() <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() <= y2 + 1


def test_box_rows_without_masks_are_counted_not_trained(tmp_path, holed_dataset):
    from visionkit.cfg import resolve
    from visionkit.tasks.instance.task import InstanceTask

    root, _, _ = holed_dataset
    (root / "instances" / "val" / "a.json").unlink()
    args = resolve({"imgsz": 64}, InstanceTask.keys)
    with pytest.warns(UserWarning, match="2 object.*box row but no polygon or mask"):
        ds = InstanceDataset([root / "images" / "val" / "a.png"], ["ring", "square"], 64, False, args, None, False)
    assert ds.objects[0].classes.tolist() == [1]


def test_loss_falls_when_overfitting_one_batch(holed_dataset):
    from visionkit.cfg import resolve
    from visionkit.tasks.instance.task import InstanceTask

    root, _, _ = holed_dataset
    torch.manual_seed(0)
    args = resolve({"imgsz": 64}, InstanceTask.keys)
    ds = InstanceDataset([root / "images" / "val" / "a.png"], ["ring", "square"], 64, False, args, None, False)
    m = Model("yolo-n-seg")
    m.config["num_classes"] = 2
    net = m.net.train()
    task = InstanceTask()
    task.bind(net)
    b = task.preprocess_batch(collate([ds[0], ds[0]]), torch.device("cpu"))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    masks = []
    for _ in range(15):
        loss, parts = task.loss(net(b["img"]), b, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.append(parts["mask"])
    assert masks[-1] < 0.7 * masks[0]


@pytest.mark.slow
def test_train_val_predict_export_end_to_end(holed_dataset, tmp_path):
    root, _, _ = holed_dataset
    m = Model("yolo-n-seg")
    metrics = m.train(**INST, data=str(root / "data.yaml"), project=str(tmp_path), save_json=True)
    assert {"mask_mAP50-95", "mask_mAP50", "box_mAP50-95", "box_mAP50"} <= set(metrics)
    assert (m.save_dir / "predictions_coco.json").is_file()  # the training run's final validation
    saved = json.loads((m.save_dir / "predictions_coco.json").read_text())
    assert saved and all(set(r) == {"image_id", "category_id", "score", "bbox", "segmentation"} for r in saved)
    again = m.val(project=str(tmp_path), verbose=False, save_json=True)
    assert again["mask_mAP50-95"] == pytest.approx(metrics["mask_mAP50-95"], abs=1e-6)
    # the written results, scored by pycocotools directly, give the reported figures
    from tests.tasks.test_instance_reference import score_files

    assert score_files(m.save_dir, "segm") == pytest.approx(again["mask_mAP50-95"], abs=1e-6)
    assert score_files(m.save_dir, "bbox") == pytest.approx(again["box_mAP50-95"], abs=1e-6)

    image = root / "images" / "val" / "a.png"
    res = m.predict(
        [str(image)],
        project=str(tmp_path),
        save=True,
        save_txt=True,
        save_masks=True,
        conf=0.0,
        max_det=4,
        verbose=False,
    )
    dets = res[0]["detections"]
    assert 0 < len(dets) <= 4 and res[0]["_masks"].shape == (len(dets), 64, 64)
    from pycocotools import mask as mask_utils

    for d, mask in zip(dets, res[0]["_masks"]):
        rle_mask = mask_utils.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()})
        assert (rle_mask.astype(bool) == mask).all() and d["area"] == int(mask.sum())
    ids = cv2.imread(str(m.save_dir / "instances" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and ids.shape == (64, 64) and ids.max() <= len(dets)
    onnx_file = m.export(format="onnx", verbose=False)
    onnx_model = Model(str(onnx_file))
    from_onnx = onnx_model.val(data=str(root / "data.yaml"), project=str(tmp_path), verbose=False, imgsz=64)
    assert from_onnx["mask_mAP50-95"] == pytest.approx(metrics["mask_mAP50-95"], abs=0.02)
    assert from_onnx["box_mAP50-95"] == pytest.approx(metrics["box_mAP50-95"], abs=0.02)


def test_mediapipe_export_is_refused_with_the_reason(tmp_path):
    from visionkit.errors import UsageError
    from visionkit.tasks.instance.task import InstanceTask

    with pytest.raises(UsageError, match="no instance-segmentation Task"):
        InstanceTask().edge_graph(None, None, (64, 64), None)


@pytest.mark.slow
def test_onnx_with_nms_and_masks_in_the_graph(holed_dataset, tmp_path):
    import onnxruntime as ort

    root, _, _ = holed_dataset
    m = Model("resnet18", task="instance")  # a bare backbone gets the task's neck and head
    m.train(**INST, data=str(root / "data.yaml"), project=str(tmp_path))
    assert m.ckpt["model_config"]["head"]["name"] == "yolo_seg"
    path = m.export(format="onnx", nms=True, conf=0.0, max_det=5, dynamic=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["detections", "num_detections", "masks"]
    x = torch.rand(2, 3, 64, 96).numpy()
    table, count, masks = session.run(None, {"images": x})
    assert table.shape == (2, 5, 6) and count.shape == (2,) and masks.shape == (2, 5, 16, 24)
    assert ((masks >= 0) & (masks <= 1)).all()
    drawn = 0
    for i in range(2):  # rows past the count are empty, and each mask is zero outside its box
        k = int(count[i])
        assert not table[i, k:].any() and not masks[i, k:].any()
        for (x1, y1, x2, y2, *_), mask in zip(table[i, :k], masks[i, :k]):
            ys, xs = np.nonzero(mask)
            drawn += len(xs)
            if len(xs):
                assert (xs.min() + 0.5) * 4 >= x1 - 1e-3 and (xs.max() + 0.5) * 4 < x2 + 1e-3
                assert (ys.min() + 0.5) * 4 >= y1 - 1e-3 and (ys.max() + 0.5) * 4 < y2 + 1e-3
    assert count.sum() > 0 and drawn > 0
    with pytest.raises(Exception, match="nms=True"):
        Model(str(path)).val(data=str(root / "data.yaml"), project=str(tmp_path), verbose=False)


def test_data_check_applies_the_instance_rules(holed_dataset):
    from visionkit.data.check import check_dataset

    root, _, _ = holed_dataset
    result = check_dataset(root / "data.yaml", verbose=False)  # instances/ present: its rules apply too
    assert result["errors"] == 0 and "instance" in result["rules"]
    for split in ("train", "val"):  # box rows only: nothing an instance segmenter can learn a mask from
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        shutil.rmtree(root / "instances" / split)
    result = check_dataset(root / "data.yaml", verbose=False, task="instance")
    texts = [p["problem"] for p in result["problems"] if p["severity"] == "error"]
    assert any("polygon rows or an exact object mask" in t for t in texts), texts
    assert check_dataset(root / "data.yaml", verbose=False)["rules"] == ["detect"]


def test_a_damaged_instance_file_fails_naming_itself_before_pycocotools_reads_it(holed_dataset):
    from visionkit.data.instances import image_objects
    from visionkit.errors import DataError

    root, _, _ = holed_dataset
    path = root / "instances" / "val" / "a.json"
    doc = json.loads(path.read_text())
    doc["objects"]["1"] = doc["objects"]["1"] + "0000"  # runs past the 64×64 image: pycocotools would overrun
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"a\.json': objects\['1'\]"):
        image_objects(root / "images" / "val" / "a.png", (64, 64), 2)

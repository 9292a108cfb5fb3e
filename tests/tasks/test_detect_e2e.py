"""The end-to-end (NMS-free) detector: YOLOv10's dual assignments, inference from the one-to-one branch by top
score without NMS, through val, predict and ONNX export."""

import json

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import TINY
from visionkit import Model
from visionkit.models.build import build_model
from visionkit.tasks.detect.loss import DetectionLoss, EndToEndLoss
from visionkit.tasks.detect.task import nms, top_detections


def farthest_match(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance (max over coordinates) from a box of ``a`` to its nearest box of ``b``: two runtimes may
    rank near-tied scores either way, which reorders the boxes without moving them."""
    return float(np.abs(a[:, None] - b[None]).max(-1).min(1).max())


def _net():
    torch.manual_seed(0)
    return build_model({**Model("yolo-n-e2e").config, "num_classes": 3})


def test_training_outputs_both_branches_inference_only_the_one_to_one():
    net = _net()
    head = net.head
    width = 4 * head.reg_max + 3
    x = torch.rand(2, 3, 64, 64)
    train_out = net.train()(x)
    assert [o.shape[1] for o in train_out] == [2 * width] * 3
    with torch.no_grad():
        eval_out = net.eval()(x)
    assert [o.shape[1] for o in eval_out] == [width] * 3
    # eval gives exactly the one-to-one half of the training outputs (BatchNorm on running statistics in both)
    with torch.no_grad():
        head.train()
        for module in head.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        both = head(net.neck(net.backbone(x)))
        head.eval()
    many, one = head.split(both)
    assert all(torch.allclose(o, e, atol=1e-5) for o, e in zip(one, eval_out))
    assert len(many) == len(one) == 3
    # two branches with weights of their own (started equal, as copies), not one branch used twice
    own = {p.data_ptr() for p in list(head.one2one_cls.parameters()) + list(head.one2one_box.parameters())}
    shared = {p.data_ptr() for p in list(head.cls.parameters()) + list(head.box.parameters())}
    assert own and not own & shared


def test_the_loss_sums_a_top_k_and_a_top_1_assignment():
    net = _net().train()
    outputs = net(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.4], [1, 2, 0.3, 0.3, 0.2, 0.3]])
    e2e = EndToEndLoss(net.head)
    assert e2e.many.assigner.topk == 10 and e2e.one.assigner.topk == 1
    total, parts = e2e(outputs, targets, (64, 64))
    many = DetectionLoss(net.head, topk=10, flatten=net.head.flatten_many)(outputs, targets, (64, 64))[0]
    one = DetectionLoss(net.head, topk=1, flatten=net.head.flatten)(outputs, targets, (64, 64))[0]
    assert total.item() == pytest.approx((many + one).item(), rel=1e-4)
    total.backward()
    assert net.head.one2one_cls[0][0][0].weight.grad.abs().sum() > 0  # both branches learn
    assert net.head.cls[0][0][0].weight.grad.abs().sum() > 0
    # the one-to-one assignment gives each object one anchor
    dist, logits, points, strides = net.head.flatten(outputs)
    from visionkit.tasks.detect.loss import pad_targets

    gt_cls, gt_boxes, gt_valid = pad_targets(targets, 2, (64, 64), "cpu")
    ltrb = net.head.distances(dist)
    boxes = torch.cat([points - ltrb[..., :2] * strides, points + ltrb[..., 2:] * strides], -1)
    _, _, fg, _ = e2e.one.assigner(logits.sigmoid(), boxes, points, gt_cls, gt_boxes, gt_valid)
    assert fg.sum(1).tolist() == [1, 1]


def test_detections_are_the_top_scores_without_nms():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40], [50, 50, 60, 60]]])
    scores = torch.tensor([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.05, 0.0]]])
    ((b, s, c),) = top_detections(boxes, scores, conf=0.1, max_det=300)
    assert s.tolist() == pytest.approx([0.9, 0.8, 0.7]) and c.tolist() == [0, 0, 1]  # the overlapping pair stays
    assert len(nms(boxes, scores, 0.1, 0.5, 300)[0][0]) == 2  # NMS would have dropped one of them
    assert len(top_detections(boxes, scores, 0.1, max_det=2)[0][0]) == 2
    assert top_detections(boxes, scores, 0.1, 300, classes=[1])[0][2].tolist() == [1]


def test_train_val_predict_and_onnx_without_nms(shapes_root, tmp_path):
    from tests.conftest import spread_head

    m = Model("yolo-n-e2e")
    metrics = m.train(**{**TINY, "imgsz": 64, "close_mosaic": 0}, data=str(shapes_root / "data.yaml"),
                      project=str(tmp_path), epochs=1)  # fmt: skip
    assert "mAP50-95" in metrics and np.isfinite(metrics["val_loss"])
    spread_head(m)  # varied scores on the one-to-one branch, the one inference reads
    path = Model(str(m.ckpt_path)).export(format="onnx", verbose=False)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["end2end"] == "true" and "no NMS" in meta["layout"]
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:3]]
    kw = {"conf": 0.05, "iou": 0.1, "verbose": False, "save": False}  # a low iou: NMS would remove many
    torch_results = m.predict(images, **kw)
    onnx_results = Model(str(path)).predict(images, **kw)
    for t, o in zip(torch_results, onnx_results, strict=True):
        assert len(t["detections"]) == len(o["detections"]) > 0
        tb, ob = (np.array([d["box"] for d in r["detections"]]) for r in (t, o))
        assert farthest_match(tb, ob) < 0.05 and farthest_match(ob, tb) < 0.05
    assert json.loads(meta["outputs"]) == ["boxes", "scores"]


def test_the_graph_table_is_the_top_k_and_its_check_can_fail():
    from visionkit.tasks.detect.graph_nms import topk_problems, topk_table

    torch.manual_seed(0)
    boxes = torch.rand(2, 50, 4) * 60
    boxes[..., 2:] += boxes[..., :2]
    scores = torch.rand(2, 50, 3)
    table, count = topk_table(boxes, scores, conf=0.5, max_det=10)
    for i, (b, s, c) in enumerate(top_detections(boxes, scores, 0.5, 10)):
        assert int(count[i]) == len(s) == 10
        assert torch.equal(table[i, :, 4], s) and torch.equal(table[i, :, 5], c.float())
        assert torch.equal(table[i, :, :4], b)
    assert topk_problems(table, count, boxes, scores, 0.5, 10) == []
    few, few_count = topk_table(boxes, scores, conf=0.98, max_det=10)  # fewer above conf than max_det
    assert (few_count < 10).all() and not few[0, int(few_count[0]) :].any()
    assert topk_problems(few, few_count, boxes, scores, 0.98, 10) == []
    broken = table.clone()
    broken[0, 0] = broken[0, 9]  # the best detection replaced by the tenth
    assert any("missing" in p for p in topk_problems(broken, count, boxes, scores, 0.5, 10))


def test_final_detections_in_the_onnx_graph(shapes_root, tmp_path):
    from tests.conftest import spread_head

    m = Model("yolo-n-e2e")
    m.train(**{**TINY, "imgsz": 64, "close_mosaic": 0}, data=str(shapes_root / "data.yaml"), project=str(tmp_path),
            epochs=1)  # fmt: skip
    spread_head(m)  # varied scores on the one-to-one branch, the one inference reads
    # dynamic: the exporter also checks another batch size and image size
    path = Model(str(m.ckpt_path)).export(format="onnx", nms=True, conf=0.05, max_det=50, dynamic=True, verbose=False)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["end2end"] == "true" and json.loads(meta["nms"]) == {"conf": 0.05, "iou": None, "max_det": 50}
    assert "NonMaxSuppression" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:3]]
    kw = {"conf": 0.05, "max_det": 50, "verbose": False, "save": False}
    for t, o in zip(m.predict(images, **kw), Model(str(path)).predict(images, **kw), strict=True):
        assert len(t["detections"]) == len(o["detections"]) > 0
        tb, ob = (np.array([d["box"] for d in r["detections"]]) for r in (t, o))
        assert farthest_match(tb, ob) < 0.05 and farthest_match(ob, tb) < 0.05

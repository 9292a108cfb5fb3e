"""In-graph NMS: the exportable detection table equals visionkit's torchvision-based NMS, eagerly and in
onnxruntime, for batch sizes and candidate counts other than the traced ones."""

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from visionkit.tasks.detect.graph_nms import detection_table, table_problems
from visionkit.tasks.detect.task import nms


def random_candidates(batch: int, n: int, classes: int, seed: int):
    """Clustered boxes (so NMS has overlaps to suppress) with distinct scores (so the order is unambiguous)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, n // 8 + 1, 2, generator=g) * 200
    pick = torch.randint(0, centres.shape[1], (batch, n), generator=g)
    xy = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 2)) + torch.randn(batch, n, 2, generator=g) * 6
    wh = 20 + torch.rand(batch, n, 2, generator=g) * 30
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1)
    scores = torch.rand(batch, n, classes, generator=g)
    return boxes, scores


def reference(boxes, scores, conf, iou, max_det):
    return [torch.cat([b, s[:, None], c[:, None].float()], 1) for b, s, c in nms(boxes, scores, conf, iou, max_det)]


class TableOnly(nn.Module):
    def __init__(self, conf, iou, max_det):
        super().__init__()
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def forward(self, boxes, scores):
        return detection_table(boxes, scores, self.conf, self.iou, self.max_det)


@pytest.mark.parametrize("conf, max_det", [(0.3, 50), (0.9, 5), (0.999, 10)])
def test_detection_table_matches_torchvision_nms_in_pytorch_and_onnxruntime(tmp_path, conf, max_det):
    iou = 0.5
    module = TableOnly(conf, iou, max_det)
    path = tmp_path / "table.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            random_candidates(2, 64, 3, 0),
            str(path),
            dynamo=False,
            input_names=["boxes", "scores"],
            output_names=["detections", "num_detections"],
            dynamic_axes={
                "boxes": {0: "b", 1: "n"},
                "scores": {0: "b", 1: "n"},
                "detections": {0: "b"},
                "num_detections": {0: "b"},
            },
            opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, n in [(1, 64), (3, 64), (3, 300), (1, 7)]:  # other batch sizes and candidate counts than traced
        boxes, scores = random_candidates(batch, n, 3, seed=batch * 1000 + n)
        expected = reference(boxes, scores, conf, iou, max_det)
        table, count = module(boxes, scores)
        got_table, got_count = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})
        assert table.shape == got_table.shape == (batch, max_det, 6)
        assert got_count.dtype == np.int64 and got_count.shape == (batch,)
        for i, rows in enumerate(expected):
            k = len(rows)
            assert int(count[i]) == int(got_count[i]) == k
            assert torch.allclose(table[i, :k], rows, atol=1e-5)
            np.testing.assert_allclose(got_table[i, :k], rows.numpy(), atol=1e-4)
            assert not table[i, k:].any() and not got_table[i, k:].any()  # padding rows are zero
    if conf < 0.99:
        assert sum(len(r) for r in expected) > 0  # the case exercised real detections


def test_table_problems_accepts_nms_results_and_names_each_defect():
    conf, iou, max_det = 0.8, 0.5, 150
    boxes, scores = random_candidates(2, 200, 3, seed=7)
    table, count = detection_table(boxes, scores, conf, iou, max_det)
    assert table_problems(table, count, boxes, scores, conf, iou, max_det) == []
    k = int(count[0])
    assert 3 < k < max_det

    def broken(edit):
        t, c = table.clone(), count.clone()
        edit(t, c)
        return " ".join(table_problems(t, c, boxes, scores, conf, iou, max_det))

    def drop_best(t, c):
        t[0, : k - 1] = table[0, 1:k].clone()
        t[0, k - 1] = 0
        c[0] = k - 1

    def wrong_class(t, c):
        t[0, 0, 5] = (t[0, 0, 5] + 1) % 3

    def swap(t, c):
        t[0, [0, k - 1]] = t[0, [k - 1, 0]]

    def shifted(t, c):
        t[0, 0, :4] += 40

    def stale_row(t, c):
        c[1] -= 1

    assert "neither kept nor suppressed" in broken(drop_best)
    assert "match no candidate" in broken(wrong_class)
    assert "not ordered best first" in broken(swap)
    assert "match no candidate" in broken(shifted)
    assert "non-zero rows after it" in broken(stale_row)
    # a tie broken the other way is fine: duplicate the best box with an equal score, keep either
    tied_boxes = torch.cat([boxes, boxes[:, :1]], 1)
    tied_scores = torch.cat([scores, scores[:, :1]], 1)
    t, c = detection_table(tied_boxes, tied_scores, conf, iou, max_det)
    assert table_problems(t, c, tied_boxes, tied_scores, conf, iou, max_det) == []

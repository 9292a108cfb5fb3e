"""The linear head's global pool: 'avg' (GAP), 'max', or both concatenated ('catavgmax'), each checked against
the pooling written out by hand, and the exported ONNX graph against PyTorch in onnxruntime."""

import numpy as np
import pytest
import torch

from visionkit.errors import UsageError
from visionkit.models.heads.classify import LinearHead


@pytest.mark.parametrize("pool", ["avg", "max", "catavgmax"])
def test_each_pool_matches_the_pooling_written_out(pool):
    torch.manual_seed(0)
    head = LinearHead([16], [4], num_classes=10, pool=pool).eval()
    feats = torch.randn(3, 16, 7, 7)
    by_hand = {
        "avg": feats.flatten(2).sum(-1) / 49,
        "max": feats.flatten(2).max(-1).values,
    }
    by_hand["catavgmax"] = torch.cat([by_hand["avg"], by_hand["max"]], 1)
    expected = by_hand[pool] @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head([feats]), expected, rtol=1e-5, atol=1e-5)
    # catavgmax reads twice the channels: 2 × 16 × 10 weights + 10 biases
    assert sum(p.numel() for p in head.parameters()) == (2 if pool == "catavgmax" else 1) * 160 + 10


def test_avg_and_max_differ_where_a_pattern_is_local():
    feats = torch.zeros(1, 1, 7, 7)
    feats[0, 0, 3, 3] = 49.0  # one strong response: max sees 49, the average 1
    heads = {p: LinearHead([1], [4], num_classes=1, pool=p) for p in ("avg", "max")}
    with torch.no_grad():
        for h in heads.values():
            h.fc.weight.fill_(1.0), h.fc.bias.zero_()
        assert float(heads["avg"]([feats])) == pytest.approx(1.0)
        assert float(heads["max"]([feats])) == pytest.approx(49.0)


def test_unknown_pool_is_refused_by_name():
    with pytest.raises(UsageError, match="pool='gem'.*avg, max, catavgmax"):
        LinearHead([16], [4], num_classes=10, pool="gem")


def test_catavgmax_model_exports_and_onnxruntime_agrees(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from visionkit.api import Model
    from visionkit.cfg import resolve
    from visionkit.export.onnx import export_onnx
    from visionkit.registry import REGISTRY

    cfg = REGISTRY.build("model", "mnist-8k")
    cfg["head"] = {"name": "linear", "pool": "catavgmax"}
    model = Model(cfg)
    task, net = model.task, model.net.eval()
    ckpt = {
        "task": "classify",
        "names": [str(i) for i in range(10)],
        "imgsz": 28,
        "in_channels": 1,
        "mean": [0.0],
        "std": [1.0],
        "model_config": cfg,
    }
    path = export_onnx(net, task, ckpt, resolve({"imgsz": 28, "verbose": False}, task.keys), tmp_path / "m.onnx")
    x = torch.rand(1, 1, 28, 28)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = net(x)
    want = want[0] if isinstance(want, (tuple, list)) else want
    np.testing.assert_allclose(got.reshape(want.shape), want.numpy(), rtol=1e-4, atol=1e-4)

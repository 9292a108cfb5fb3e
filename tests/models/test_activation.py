"""The model config's ``act``: SiLU swapped model-wide for another activation, the weights unchanged, and in the
exported graph the activation is one op that onnxruntime folds into the conv before it."""

import pytest
import torch
from torch import nn

from visionkit.cfg import CHOICES, resolve
from visionkit.errors import UsageError
from visionkit.models.build import build_model
from visionkit.models.layers import ACTIVATIONS
from visionkit.registry import REGISTRY


def config(**extra) -> dict:
    cfg = REGISTRY.build("model", "yolo-n-e2e")
    cfg.update(num_classes=3, **extra)
    return cfg


def count(net: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def test_relu_replaces_every_silu_and_keeps_the_weights():
    torch.manual_seed(0)
    silu = build_model(config()).eval()
    relu = build_model(config(act="relu")).eval()
    assert count(relu, nn.SiLU) == 0 and count(relu, nn.ReLU) == count(silu, nn.SiLU) > 0
    relu.load_state_dict(silu.state_dict())  # same parameters and buffers, key for key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert [t.shape for t in silu(x)] == [t.shape for t in relu(x)]
        a, b = silu.neck(silu.backbone(x)), relu.neck(relu.backbone(x))  # the fresh head's outputs are its biases
    assert not torch.allclose(a[0], b[0])  # the activation changed what the network computes


def test_silu_is_the_default_and_a_bad_name_is_refused_by_name():
    assert count(build_model(config(act="silu")), nn.SiLU) == count(build_model(config()), nn.SiLU)
    with pytest.raises(UsageError, match="act='gelu'.*relu"):
        build_model(config(act="gelu"))
    with pytest.raises(UsageError, match="act='gelu'"):
        resolve({"act": "gelu"})


def test_settings_choices_match_the_model_table():
    assert set(CHOICES["act"]) == set(ACTIVATIONS)


def test_exported_relu_model_has_no_sigmoid_products_in_its_body(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from visionkit.api import Model
    from visionkit.export.onnx import export_onnx

    ops = {}
    for act in ("silu", "relu"):
        cfg = config(act=act)
        model = Model(cfg)
        task, net = model.task, model.net.eval()
        ckpt = {
            "task": "detect",
            "names": ["a", "b", "c"],
            "imgsz": 64,
            "in_channels": 3,
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
            "model_config": cfg,
        }
        path = export_onnx(
            net, task, ckpt, resolve({"imgsz": 64, "verbose": False}, task.keys), tmp_path / f"{act}.onnx"
        )
        graph = onnx.load(str(path)).graph
        ops[act] = [n.op_type for n in graph.node]
    assert ops["silu"].count("Sigmoid") > 10  # each SiLU is x * sigmoid(x)
    assert ops["relu"].count("Sigmoid") <= 1 and ops["relu"].count("Relu") == ops["silu"].count("Sigmoid") - 1


def test_act_setting_overrides_the_preset_for_a_run():
    from visionkit.api import Model

    model = Model("yolo-n-e2e")
    model._args({"act": "relu"})  # what train/val/export resolve their keys with
    assert model.config["act"] == "relu"
    assert count(build_model({**model.config, "num_classes": 3}), nn.SiLU) == 0


def test_the_fastest_preset_runs_on_relu():
    assert count(build_model({**REGISTRY.build("model", "yolo-p-e2e"), "num_classes": 3}), nn.SiLU) == 0

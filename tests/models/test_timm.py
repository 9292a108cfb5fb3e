"""timm networks as backbones (``timm/<name>``): contract, stride selection, typos, presets, CLI listing, ONNX."""

import math

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from visionkit import Model
from visionkit.errors import RegistryError, UsageError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import save_checkpoint
from visionkit.registry import REGISTRY, Family, Registry, build

timm = pytest.importorskip("timm")

NAME = "timm/mobilenetv3_small_050"


@pytest.mark.parametrize("in_channels", [1, 3])
def test_timm_backbone_keeps_the_contract(in_channels):
    net = build("backbone", NAME, in_channels=in_channels, out_strides=(4, 8, 16, 32)).eval()
    ref = timm.create_model("mobilenetv3_small_050", features_only=True, pretrained=False)
    # channels and strides come from timm's FeatureInfo
    info = {r: c for r, c in zip(ref.feature_info.reduction(), ref.feature_info.channels())}
    assert net.strides == (4, 8, 16, 32) and net.channels == tuple(info[s] for s in net.strides)
    for size in (64, 50):
        with torch.no_grad():
            feats = net(torch.randn(2, in_channels, size, size))
        padded = math.ceil(size / 32) * 32
        assert [tuple(f.shape) for f in feats] == [
            (2, c, padded // s, padded // s) for c, s in zip(net.channels, net.strides)
        ]


def test_missing_stride_lists_what_the_network_has():
    with pytest.raises(
        UsageError, match=r"timm/mobilenetv3_small_050 cannot give stride\(s\) \[64\]; it has \(2, 4, 8"
    ):
        build("backbone", NAME, out_strides=(16, 32, 64))


def test_typo_suggests_timm_names():
    with pytest.raises(RegistryError, match="Did you mean 'timm/mobilenetv3_small_050'"):
        build("backbone", "timm/mobilenetv3_smal_050")
    with pytest.raises(RegistryError, match="Did you mean 'timm/resnet18'"):
        Model("timm/resnet19", task="detect")
    assert not REGISTRY.contains("backbone", "timm/no_such_net")
    assert REGISTRY.contains("backbone", NAME)


def test_model_timm_name_gets_the_tasks_neck_and_head():
    seg = Model(NAME, task="segment").config
    assert seg["backbone"] == {"name": NAME, "out_strides": [2, 4, 8, 16, 32]} and seg["head"]["name"] == "unet"
    det = Model(NAME, task="detect").config
    assert det["head"]["name"] == "yolo"
    net = build_model({**det, "num_classes": 3})
    out = net(torch.zeros(1, 3, 64, 64))
    assert out is not None and net.backbone.strides == (8, 16, 32)


def test_backbone_override_with_a_timm_name(shapes_root, tmp_path):
    m = Model("yolo-n")
    m.train(
        data=str(shapes_root / "data.yaml"),
        backbone=NAME,
        epochs=1,
        imgsz=64,
        batch=8,
        workers=0,
        verbose=False,
        plots=False,
        close_mosaic=0,
        project=str(tmp_path),
    )
    assert m.ckpt["model_config"]["backbone"]["name"] == NAME
    assert any(k.startswith("backbone.body.") for k in m.ckpt["state_dict"])


def test_family_resolver_is_generic():
    reg = Registry()
    made = []

    def resolve(rest):
        if rest != "a":
            raise RegistryError(f"no {rest}")
        made.append(rest)
        return lambda **kw: ("built", rest, kw)

    reg.add_family("neck", Family("fam/", resolve, lambda: ["a"], "test family"))
    assert reg.build("neck", "fam/a", x=1) == ("built", "a", {"x": 1})
    assert reg.contains("neck", "fam/a") and not reg.contains("neck", "fam/b")
    assert reg.available("neck") == [] and reg.available("neck", families=True) == ["fam/a"]
    assert reg.available("neck", "fam/*") == ["fam/a"]
    with pytest.raises(RegistryError, match="no b"):
        reg.get("neck", "fam/b")
    with pytest.raises(RegistryError, match="already registered"):
        reg.add_family("neck", Family("fam/", resolve, list))


def test_cli_lists_timm_names():
    out = run_cli("models", "backbone", "timm/mobilenetv3_small_0*")
    assert out.returncode == 0, out.stderr
    assert "timm/mobilenetv3_small_050" in out.stdout and "timm/mobilenetv3_small_075" in out.stdout
    summary = run_cli("models")
    assert summary.returncode == 0, summary.stderr
    assert f"{len(timm.list_models())} names" in summary.stdout and "timm/<name>" in summary.stdout


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_timm_backbone_model_exports_to_onnx(task, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    config = {**Model(NAME, task=task).config, "num_classes": 3}
    net = build_model(config).eval()
    for m in net.modules():  # trained-looking BatchNorm statistics, so the check is not on an identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {
        "task": task,
        "model_config": config,
        "state_dict": net.state_dict(),
        "names": ["a", "b", "c"],
        "imgsz": 64,
        "in_channels": 3,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    path = save_checkpoint(ckpt, tmp_path / "timm.pt")
    onnx_path = Model(str(path)).export(format="onnx", verbose=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = Model(str(path)).task.export_wrapper(net, Model(str(path))._args({}))(x)
    ref = ref[0] if isinstance(ref, (tuple, list)) else ref
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == tuple(ref.shape)
    assert np.abs(got - ref.numpy()).max() <= 1e-3 * max(1.0, float(ref.abs().max()))

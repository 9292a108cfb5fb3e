import sys

import pytest
import torch

from tests.conftest import FIXTURES, TINY, run_cli
from visionkit.errors import RegistryError
from visionkit.registry import REGISTRY, Registry, available, build


def test_register_build_and_list():
    reg = Registry()

    @reg.register("backbone", "my_net")
    def my_net(*, scale: int = 1):
        return {"scale": scale}

    assert reg.build("backbone", "my_net", scale=3) == {"scale": 3}
    assert reg.available("backbone", "my_*") == ["my_net"]
    assert reg.available("backbone", "zzz*") == []


def test_duplicate_refused_unless_override():
    reg = Registry()
    reg.register("head", "h")(lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("head", "h")(lambda: 2)
    reg.register("head", "h", override=True)(lambda: 3)
    assert reg.build("head", "h") == 3


def test_miss_suggests_close_names():
    with pytest.raises(RegistryError) as e:
        build("backbone", "resnet19")
    assert "resnet18" in str(e.value) and "Did you mean" in str(e.value)
    with pytest.raises(RegistryError, match="unknown component kind 'backbones'.*'backbone'"):
        available("backbones")


def test_builtins_registered():
    assert {"mnist_net", "cifar_dilated", "vit_tiny", "resnet18", "mobilenet_v3_small"} <= set(available("backbone"))
    assert {"mnist-tiny", "cifar-dilated", "vit-tiny"} <= set(available("model"))
    assert {"linear", "bilinear"} <= set(available("head"))
    assert "classify" in available("task")


def test_plugin_loaded_lazily_and_broken_one_reported(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "plugins"))
    reg = Registry()
    with pytest.warns(UserWarning, match="brokenplugin"):
        reg.load_plugins()
    assert "tinyplugin" in reg.plugins_loaded
    assert "vk_brokenplugin_missing_module" in reg.plugins_failed["brokenplugin"]
    # the working plugin registered into the global registry on import
    assert REGISTRY.contains("backbone", "tiny_plugin_net")
    net = build("backbone", "tiny_plugin_net")
    assert [f.shape[1] for f in net(torch.zeros(1, 3, 16, 16))] == [16]


def test_plugin_trains_from_the_cli(shapes_root, tmp_path):
    env = {"PYTHONPATH": f"{FIXTURES / 'plugins'}:{':'.join(sys.path)}"}
    listed = run_cli("models", "backbone", "tiny*", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "tiny_plugin_net" in listed.stdout and "brokenplugin FAILED" in listed.stdout
    args = [f"{k}={v}" for k, v in TINY.items()]
    r = run_cli(
        "classify",
        "train",
        "model=tiny_plugin_net",
        f"data={shapes_root / 'data.yaml'}",
        "epochs=1",
        f"project={tmp_path / 'runs'}",
        *args,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(tmp_path / "runs/classify/train/weights/best.pt", weights_only=True)
    assert ckpt["model_config"]["backbone"]["name"] == "tiny_plugin_net"


def test_exported_files_are_run_by_the_backend_registered_for_their_suffix(monkeypatch, tmp_path):
    """api.Model finds an exported file's backend in the registry (kind runtime) by suffix, so a plugin's format
    adds its own reader by registering one."""
    from visionkit.api import Model, exported_backend
    from visionkit.runtime.mediapipe_backend import MediaPipeModel
    from visionkit.runtime.onnx_backend import OnnxModel
    from visionkit.runtime.openvino_backend import OpenVinoModel

    assert exported_backend("runs/best.onnx") is OnnxModel and exported_backend("best.XML") is OpenVinoModel
    assert exported_backend("best.tflite") is MediaPipeModel
    assert exported_backend("best.pt") is None and exported_backend("yolo-n") is None
    assert exported_backend("timm/resnet18.a1_in1k") is None

    class FakeBackend:
        suffix = ".fake"

        def __init__(self, path, overrides):
            self.meta = {"task": "classify", "names": ["a", "b"], "model_config": None, "imgsz": 8}

    monkeypatch.setitem(REGISTRY._items["runtime"], "fake", FakeBackend)
    m = Model(str(tmp_path / "model.fake"))
    assert isinstance(m.net, FakeBackend) and m.task_name == "classify" and m.names == ["a", "b"]

"""Contract tests over every registered backbone (built-ins and anything else registered)."""

import math

import pytest
import torch
from torch import nn

from visionkit.errors import UsageError
from visionkit.registry import available, build

BACKBONES = [n for n in available("backbone") if n != "tiny_plugin_net"]


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_channels_and_strides_match_forward(name, in_channels):
    net = build("backbone", name, in_channels=in_channels).eval()
    assert list(net.strides) == sorted(set(net.strides)), "strides must be strictly increasing"
    assert len(net.channels) == len(net.strides)
    # 64 is a multiple of every default stride; 50 is not and is padded up to the next multiple of the largest
    for size in (64, 50):
        with torch.no_grad():
            feats = net(torch.randn(2, in_channels, size, size))
        padded = math.ceil(size / net.strides[-1]) * net.strides[-1]
        assert len(feats) == len(net.strides)
        for f, c, s in zip(feats, net.channels, net.strides):
            assert f.shape == (2, c, padded // s, padded // s), (name, size, s)


@pytest.mark.parametrize("name", BACKBONES)
def test_unavailable_stride_raises(name):
    with pytest.raises(UsageError, match="cannot give stride"):
        build("backbone", name, out_strides=(3,))


def test_wrong_input_channels_is_a_clear_error():
    net = build("backbone", "mnist_net", in_channels=1)
    with pytest.raises(UsageError, match="in_channels=3"):
        net(torch.zeros(1, 3, 28, 28))


def test_resnet_all_strides_and_truncation():
    full = build("backbone", "resnet18", out_strides=(2, 4, 8, 16, 32))
    assert full.strides == (2, 4, 8, 16, 32) and full.channels == (64, 64, 128, 256, 512)
    short = build("backbone", "resnet18", out_strides=(8,))
    # stages past the deepest requested stride are dropped
    assert sum(p.numel() for p in short.parameters()) < sum(p.numel() for p in full.parameters()) / 4


def test_local_weights_file_loads(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = build("backbone", "resnet18", weights=str(tmp_path / "r18.pth"))
    assert torch.equal(net.stages[0][0].weight, ref.conv1.weight)
    grey = build("backbone", "resnet18", in_channels=1, weights=str(tmp_path / "r18.pth"))
    assert torch.allclose(grey.stages[0][0].weight, ref.conv1.weight.sum(1, keepdim=True), atol=1e-6)


def test_a_backbone_that_declares_the_wrong_channels_fails_at_build():
    """Declared channels/strides are checked against a meta-device forward when the model is built."""
    from torch import nn

    from visionkit.models.backbones import StagedBackbone
    from visionkit.models.build import build_model
    from visionkit.registry import REGISTRY

    def liar(*, out_strides=None, in_channels: int = 3) -> StagedBackbone:
        stages = [nn.Sequential(nn.Conv2d(in_channels, 8, 3, 2, 1)), nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1))]
        net = StagedBackbone(stages, [2, 4], [8, 16], (2, 4), in_channels, "liar_net")
        net.channels = (8, 32)  # the second stage really gives 16
        return net

    REGISTRY.register("backbone", "liar_net", override=True)(liar)
    config = {"task": "classify", "num_classes": 2, "backbone": {"name": "liar_net"}, "head": {"name": "linear"}}
    try:
        with pytest.raises(UsageError, match=r"backbone 'liar_net' declares .*\(32, 4\).* but returns .*\(16, 4\)"):
            build_model(config)
    finally:
        REGISTRY._items["backbone"].pop("liar_net")  # other tests list the registered backbones


@pytest.mark.parametrize("name", ["mnist_net", "mnist_lean"])
def test_course_nets_place_batch_norm_before_or_after_the_relu(name):
    nets = {order: build("backbone", name, bn_order=order) for order in ("relu-bn", "bn-relu")}
    count = {order: sum(p.numel() for p in net.parameters()) for order, net in nets.items()}
    assert count["relu-bn"] == count["bn-relu"]  # the same layers in another order
    first = {order: [type(m).__name__ for m in net.stages[0][0]][:3] for order, net in nets.items()}
    assert first == {"relu-bn": ["Conv2d", "ReLU", "BatchNorm2d"], "bn-relu": ["Conv2d", "BatchNorm2d", "ReLU"]}
    x = torch.randn(2, 1, 28, 28)
    assert (nets["bn-relu"].eval()(x)[-1] >= 0).all()  # a ReLU is the last thing each unit does
    assert (nets["relu-bn"].train()(x)[-1] < 0).any()  # batch statistics centre what the ReLU cut
    with pytest.raises(UsageError, match="bn_order='bn_relu'"):
        build("backbone", name, bn_order="bn_relu")


@pytest.mark.parametrize("name", ["mnist_net", "mnist_lean"])
def test_course_nets_take_another_activation_with_the_same_weights(name):
    nets = {}
    for act in ("relu", "silu"):
        torch.manual_seed(0)
        nets[act] = build("backbone", name, act=act, bn_order="bn-relu")
    kinds = {act: [type(m) for m in net.modules()] for act, net in nets.items()}
    assert kinds["silu"].count(nn.SiLU) == kinds["relu"].count(nn.ReLU) > 5 and nn.ReLU not in kinds["silu"]
    # only the activation changed: same parameters, drawn in the same order from the seed
    for (k, a), (_, b) in zip(nets["relu"].state_dict().items(), nets["silu"].state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.randn(2, 1, 28, 28)
    assert (nets["silu"].eval()(x)[-1] < 0).any()  # SiLU lets small negatives through, ReLU does not
    with pytest.raises(UsageError, match=f"{name}: act='swish' is not one of silu, relu"):
        build("backbone", name, act="swish")

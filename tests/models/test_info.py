import pytest
import torch
from torch import nn

from tests.conftest import run_cli
from visionkit import Model
from visionkit.models.info import count_flops, layer_table, model_info


def test_receptive_field_matches_hand_computation():
    # conv3 p1 → conv3 p1 → maxpool2 → conv3 p1 → conv3 dilation 2, p2
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
    )
    rows = layer_table(net, torch.zeros(1, 1, 16, 16))
    # by hand: RF r += (k'-1)·j; j *= s; start += ((k'-1)/2 - p)·j
    assert [r.rf for r in rows] == [3, 5, 6, 10, 18]
    assert [r.jump for r in rows] == [1, 1, 2, 2, 2]
    assert [r.start for r in rows] == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert [r.shape for r in rows][-1] == (1, 4, 8, 8)
    assert [r.params for r in rows] == [40, 148, 0, 148, 148]


def test_strided_conv_start_and_jump():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=0), nn.Conv2d(1, 1, 3, stride=1, padding=0))
    rows = layer_table(net, torch.zeros(1, 1, 9, 9))
    assert [(r.rf, r.jump, r.start) for r in rows] == [(3, 2, 1.5), (7, 2, 3.5)]


def test_flops_of_one_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, torch.zeros(1, 3, 10, 10)) == 2 * 3 * 8 * 9 * 10 * 10


def test_course_models_meet_their_budgets():
    mnist = model_info(Model("mnist-tiny").net, 28, 1)
    assert mnist["params"] < 20_000
    assert any(r.kind == "BatchNorm2d" for r in mnist["layers"]) and any(r.kind == "Dropout2d" for r in mnist["layers"])
    assert any(r.kind == "Conv2d" and r.params == 19 * 9 for r in mnist["layers"])  # a 1x1 transition, width 19
    lean = model_info(Model("mnist-8k").net, 28, 1)
    assert lean["params"] < 8_000 and lean["max_rf"] >= 28  # the last conv sees the whole digit
    assert sum(r.kind == "MaxPool2d" for r in lean["layers"]) == 2
    cifar_model = Model("cifar-dilated")
    cifar = model_info(cifar_model.net, 32, 3)
    assert cifar["params"] < 200_000
    assert cifar["max_rf"] > 44
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar_model.net.modules())
    convs = [m for m in cifar_model.net.modules() if isinstance(m, nn.Conv2d)]
    assert any(m.dilation[0] > 1 for m in convs) and any(m.groups == m.in_channels > 1 for m in convs)


def test_models_info_cli():
    r = run_cli("models", "info", "model=mnist-tiny", "imgsz=28")
    assert r.returncode == 0, r.stderr
    assert "parameters" in r.stdout and "GFLOPs" in r.stdout and "RF" in r.stdout


@pytest.mark.parametrize("preset", ["vit-tiny", "cifar-dilated"])
def test_presets_forward(preset):
    m = Model(preset)
    out = m.net(torch.zeros(2, m.config["in_channels"], 32, 32))
    assert out.shape == (2, 10)


class Branchy(nn.Module):
    """conv3 → (conv3 | identity) add → (conv5 | conv1) cat → stride-2 conv3 → upsample ×2 → conv3."""

    def __init__(self):
        super().__init__()
        self.stem, self.branch = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.wide, self.narrow = nn.Conv2d(2, 2, 5, padding=2), nn.Conv2d(2, 2, 1)
        self.down, self.last = nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.branch(x)  # residual: the union of a 3 and a 5 window → 5
        x = torch.cat([self.wide(x), self.narrow(x)], 1)  # 5 + 4 = 9 and 5 → 9
        x = self.down(x)  # 9 + 2 = 11, jump 2
        x = nn.functional.interpolate(x, scale_factor=2.0)  # jump back to 1
        return self.last(x)  # 11 + 2 = 13


def test_receptive_field_follows_branches_concats_and_upsampling():
    rows = {r.name: r for r in layer_table(Branchy(), torch.zeros(1, 1, 16, 16))}
    assert rows["branch"].rf == 5 and rows["wide"].rf == 9 and rows["narrow"].rf == 5
    assert (rows["down"].rf, rows["down"].jump) == (11, 2)
    assert (rows["last"].rf, rows["last"].jump) == (13, 1)


def test_resnet18_receptive_field_is_the_published_435():
    torchvision = pytest.importorskip("torchvision")
    info = model_info(torchvision.models.resnet18(), 224, 3)
    assert info["max_rf"] == 435  # the value in the receptive-field literature for ResNet-18
    assert info["layers"][-1].rf == float("inf")  # the classifier after global pooling sees everything


def test_squeeze_excitation_gate_rescales_without_widening():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            x = self.conv(x)
            return x * torch.sigmoid(self.fc(self.pool(x)))

    rows = {r.name: r for r in layer_table(Gated(), torch.zeros(1, 1, 8, 8))}
    assert rows["pool"].rf == float("inf") and rows["conv"].rf == 3
    info = model_info(nn.Sequential(Gated(), nn.Conv2d(4, 4, 3, padding=1)), 8, 1)
    assert info["layers"][-1].rf == 5 and info["max_rf"] == 5


def test_cifar_dilated_rf_by_hand():
    """The course's arithmetic over cifar-dilated's convs in order (a plain chain): RF_out = RF_in + (k-1)·d·jump_in,
    jump_out = jump_in·s. It must agree with model_info, and the last conv before pooling must exceed 44 px."""
    m = Model("cifar-dilated")
    rf, jump, by_hand = 1, 1, []
    for mod in m.net.backbone.modules():
        if isinstance(mod, nn.Conv2d):
            rf += (mod.kernel_size[0] - 1) * mod.dilation[0] * jump
            jump *= mod.stride[0]
            by_hand.append((rf, jump))
    info = model_info(m.net, 32, 3)
    convs = [(r.rf, r.jump) for r in info["layers"] if r.kind == "Conv2d"]
    assert convs == by_hand
    assert by_hand[-1] == (75, 8) and info["max_rf"] == 75 and 100_000 < info["params"] < 200_000

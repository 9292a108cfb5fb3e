"""Contract tests over every registered model preset, neck and head (the backbones have their own file): each
builds, its outputs have the shapes its task reads, and a checkpoint's state rebuilds the same network."""

import pytest
import torch

from visionkit.models.build import build_model
from visionkit.registry import REGISTRY, available, build

PRESETS = available("model")


def expected_shapes(cfg: dict, net, size: int) -> list[tuple]:
    """What the task's head must output for a (2, C, size, size) input."""
    n, task = cfg["num_classes"], cfg["task"]
    if task == "classify":
        return [(2, n)]
    if task in ("segment", "depth"):
        return [(2, n, size, size)]
    per_cell = 4 * net.head.reg_max + n  # detect: box distribution bins + class scores, per stride
    if task == "instance":  # ... + mask coefficients, then the prototypes at half the finest stride
        m, s0 = net.head.num_masks, net.head.strides[0]
        levels = [(2, per_cell + m, size // s, size // s) for s in net.head.strides]
        return [levels, (2, m, 2 * size // s0, 2 * size // s0)]
    return [(2, per_cell, size // s, size // s) for s in net.head.strides]


def shapes_of(out) -> list:
    """The shapes of a head's outputs: a tensor, a list of tensors, or an instance head's (levels, prototypes)."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [shapes_of(o) if isinstance(o, (list, tuple)) else tuple(o.shape) for o in outs]


def tensors_of(out) -> list:
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [t for o in outs for t in (tensors_of(o) if isinstance(o, (list, tuple)) else [o])]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_outputs_its_task_shapes_and_rebuilds(name):
    before = {kind: available(kind) for kind in REGISTRY.kinds}
    cfg = REGISTRY.build("model", name)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x = torch.randn(2, cfg.get("in_channels", 3), 64, 64)
    with torch.no_grad():
        out = net(x)
    outs = tensors_of(out)
    assert shapes_of(out) == expected_shapes(cfg, net, 64), name
    assert all(torch.isfinite(o).all() for o in outs)
    again = build_model(REGISTRY.build("model", name)).eval()  # a fresh build, then the saved state
    again.load_state_dict(net.state_dict())
    with torch.no_grad():
        out2 = again(x)
    for a, b in zip(outs, tensors_of(out2)):
        assert torch.equal(a, b)
    assert {kind: available(kind) for kind in REGISTRY.kinds} == before  # building registers nothing


@pytest.mark.parametrize("neck", available("neck"))
def test_every_neck_keeps_strides_and_declares_its_channels(neck):
    backbone = build("backbone", "csp_darknet", scale="n").eval()
    module = build("neck", neck, in_channels=backbone.channels, in_strides=backbone.strides).eval()
    with torch.no_grad():
        feats = module(backbone(torch.randn(2, 3, 64, 64)))
    assert tuple(module.strides) == tuple(backbone.strides)
    assert [tuple(f.shape) for f in feats] == [
        (2, c, 64 // s, 64 // s) for c, s in zip(module.channels, module.strides)
    ]


@pytest.mark.parametrize("head", available("head"))
def test_every_head_builds_on_a_default_backbone(head):
    task = {
        "linear": "classify",
        "bilinear": "classify",
        "yolo": "detect",
        "yolo_e2e": "detect",
        "yolo_seg": "instance",
        "unet": "segment",
        "dpt": "depth",
    }[head]
    cfg = REGISTRY.build("task", task).bare_model_config("csp_darknet")
    cfg.update(head={"name": head}, num_classes=3, in_channels=3, task=task)
    if head in ("yolo", "yolo_e2e", "yolo_seg"):
        cfg["neck"] = {"name": "pan"}
    net = build_model(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert shapes_of(out) == expected_shapes(cfg, net, 64), head

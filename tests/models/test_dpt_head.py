"""The DPT head's output stage: DPT's order (narrow, upsample, one full-resolution conv) by default, and
checkpoints written with the earlier 'v1' order (upsample the full width first) still rebuild their own network."""

import pytest
import torch

from visionkit.errors import UsageError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from visionkit.registry import REGISTRY


def depth_config(**head) -> dict:
    cfg = REGISTRY.build("model", "depth-n")
    cfg["head"].update(head)
    return cfg


def test_dpt_layout_is_full_resolution_and_far_cheaper_than_v1():
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, 64, 64)
    flops = {}
    for layout in ("dpt", "v1"):
        net = build_model(depth_config(layout=layout)).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            out = net(x)
        assert out.shape == (1, 1, 64, 64)
        flops[layout] = fc.get_total_flops()
    # the full-width convs at the input resolution were most of the model's compute
    assert flops["dpt"] < 0.7 * flops["v1"]


def test_unknown_layout_is_refused_by_name():
    with pytest.raises(UsageError, match="layout='dtp'"):
        build_model(depth_config(layout="dtp"))


def test_checkpoint_from_before_layout_rebuilds_the_v1_network(tmp_path):
    torch.manual_seed(0)
    cfg = depth_config(layout="v1")
    net = build_model(cfg).eval()
    old_config = depth_config()
    assert "layout" not in old_config["head"]  # as in files written before the key existed
    ckpt = {"task": "depth", "model_config": old_config, "state_dict": net.state_dict()}
    path = save_checkpoint(ckpt, tmp_path / "old.pt")
    loaded = load_checkpoint(path, task="depth")
    assert loaded["model_config"]["head"]["layout"] == "v1"
    rebuilt = model_from_checkpoint(loaded, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net(x), atol=1e-5)


def test_new_checkpoint_keeps_its_layout(tmp_path):
    net = build_model(depth_config()).eval()
    path = save_checkpoint(
        {"task": "depth", "model_config": net.config, "state_dict": net.state_dict()}, tmp_path / "n.pt"
    )
    assert load_checkpoint(path)["model_config"]["head"].get("layout", "dpt") == "dpt"


def test_fusion_width_follows_the_encoder():
    from visionkit.models.heads.dpt import fusion_width

    assert [fusion_width([c]) for c in (16, 24, 32, 40, 64, 256, 2048)] == [32, 32, 32, 48, 64, 256, 256]
    net = build_model(depth_config())  # depth-n: CSPDarknet-n's finest map has 32 channels
    assert net.head.project[0].out_channels == 32


def test_checkpoint_from_before_the_width_followed_the_encoder_keeps_64(tmp_path):
    torch.manual_seed(0)
    net = build_model(depth_config(features=64, layout="v1")).eval()
    old_config = depth_config()  # a file written when the default width was 64 recorded no 'features'
    path = save_checkpoint(
        {"task": "depth", "model_config": old_config, "state_dict": net.state_dict()}, tmp_path / "o.pt"
    )
    loaded = load_checkpoint(path)
    assert loaded["model_config"]["head"]["features"] == 64 and loaded["model_config"]["head"]["layout"] == "v1"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(loaded, path)(x), net(x), atol=1e-5)


def test_output_width_sets_the_full_resolution_conv_and_refuses_the_v1_layout():
    from visionkit.models.heads.dpt import full_resolution_width

    # DPT's half of the fusion width (at most 32) from 64 up; a quarter (at least 8) below: depth-n's 8 at 32
    assert [full_resolution_width(f) for f in (16, 32, 48, 64, 128, 256)] == [8, 8, 12, 32, 32, 32]
    assert build_model(depth_config()).head.output[0].out_channels == 8
    net = build_model(depth_config(output_width=12))
    assert net.head.output[0].out_channels == 12 and net.head.output[2].in_channels == 12
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(UsageError, match="output_width=12 needs layout 'dpt'"):
        build_model(depth_config(output_width=12, layout="v1"))


def test_checkpoint_keeps_the_width_of_its_full_resolution_conv(tmp_path):
    torch.manual_seed(0)
    net = build_model(depth_config(output_width=16)).eval()
    old_config = depth_config()
    old_config["head"].pop("output_width", None)  # a file written before the key existed
    path = save_checkpoint(
        {"task": "depth", "model_config": old_config, "state_dict": net.state_dict()}, tmp_path / "w.pt"
    )
    loaded = load_checkpoint(path)
    assert loaded["model_config"]["head"]["output_width"] == 16
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(loaded, path)(x), net(x), atol=1e-5)

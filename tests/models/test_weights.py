"""weights=: files in the layouts users have (torchvision, timm/safetensors, visionkit checkpoints of any task),
matched by name or order and shape, reported; transfer between tasks; freeze and lr_backbone. Every weight file is
made here from a randomly initialised network; nothing is downloaded."""

import json

import pytest
import torch
import torchvision

from tests.conftest import TINY
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.engine.setup import build_optimizer
from visionkit.errors import CheckpointError, UsageError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import save_checkpoint
from visionkit.models.weights import IMAGENET_MEAN, freeze, load_weights


def _net(backbone, task="classify", num_classes=3, in_channels=3):
    config = {**Model(backbone, task=task).config, "num_classes": num_classes, "in_channels": in_channels}
    return build_model(config)


def _assert_backbone_equal(net, expected: dict):
    """Every backbone tensor of ``net`` equals ``expected[own key]``."""
    own = net.state_dict()
    for k, v in expected.items():
        assert torch.equal(own[k], v), k


def test_torchvision_state_dict_loads_by_order(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    net = _net("resnet18")
    report = load_weights(net, tmp_path / "resnet18.pth")
    assert report.match == "order" and report.backbone_loaded == 1.0
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]
    sd = net.backbone.stages
    assert torch.equal(sd[0][0].weight, ref.conv1.weight) and torch.equal(sd[0][1].running_var, ref.bn1.running_var)
    assert torch.equal(net.backbone.stages[-1][0][1].conv2.weight, ref.layer4[1].conv2.weight)
    assert [k for k, _ in report.left_at_init] == ["head.fc.weight", "head.fc.bias"]  # the task's head: fresh
    assert report.mean == IMAGENET_MEAN  # torchvision's ImageNet statistics come with its files
    # a grey network: the stem takes the RGB filters summed over colour
    grey = _net("resnet18", in_channels=1)
    load_weights(grey, tmp_path / "resnet18.pth")
    assert torch.allclose(grey.backbone.stages[0][0].weight, ref.conv1.weight.sum(1, keepdim=True), atol=1e-6)


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "convnext_atto"])
def test_timm_safetensors_loads_by_name(name, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = timm.create_model(name, pretrained=False, num_classes=7)  # a whole classifier, as timm / HF ship them
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "model.safetensors"))
    net = _net(f"timm/{name}", task="segment")
    report = load_weights(net, tmp_path / "model.safetensors")
    assert report.match == "name" and report.backbone_loaded == 1.0
    src = full.state_dict()
    for own, from_file, _ in report.loaded:
        assert torch.equal(net.state_dict()[own], src[from_file]), own
    assert any(k.startswith(("classifier", "head")) for k in report.unused)  # the classifier is not a backbone
    if name == "convnext_atto":  # timm's feature extractor flattens stem.0 into stem_0: still matched by name
        assert ("backbone.body.stem_0.weight", "stem.0.weight", "name") in report.loaded


def test_wrong_file_is_an_error_unless_strict_false(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    net = _net("mobilenet_v3_small")
    with pytest.raises(CheckpointError, match=r"fill only .* of the backbone \(min_loaded=0.9\).*strict=False"):
        load_weights(net, tmp_path / "r18.pth")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_weights(net, tmp_path / "r18.pth", strict=False)
    assert report.backbone_loaded < 0.9 and report.left_at_init and report.unused
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert sorted(changed) == sorted(k for k, _, _ in report.loaded)  # exactly what the report says loaded
    # min_loaded lowers the bar
    load_weights(_net("mobilenet_v3_small"), tmp_path / "r18.pth", min_loaded=report.backbone_loaded / 2)


def test_pickled_code_and_empty_files_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("PWNED",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_weights(_net("mnist_net"), tmp_path / "evil.pth")
    torch.save({"epoch": 3}, tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_weights(_net("mnist_net"), tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(_net("mnist_net"), tmp_path / "missing.pth")


def _checkpoint(net, task, path, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)):
    return save_checkpoint(
        {
            "task": task,
            "model_config": net.config,
            "state_dict": net.state_dict(),
            "names": ["a", "b", "c"],
            "imgsz": 64,
            "in_channels": 3,
            "mean": list(mean),
            "std": list(std),
        },
        path,
    )


def test_visionkit_checkpoint_of_another_task_transfers_backbone_and_neck(tmp_path):
    torch.manual_seed(2)
    seg = _net("unet-n", task="segment")
    for p in seg.parameters():
        p.data.normal_()
    path = _checkpoint(seg, "segment", tmp_path / "seg.pt")
    depth = _net("depth-n", task="depth")  # the same csp_darknet-n encoder at strides 4-32
    head_before = {k: v.clone() for k, v in depth.state_dict().items() if k.startswith("head.")}
    report = load_weights(depth, path)
    assert report.layout == "visionkit segment checkpoint" and report.backbone_loaded == 1.0
    _assert_backbone_equal(depth, {k: v for k, v in seg.state_dict().items() if k in depth.state_dict()})
    for k, v in head_before.items():  # the head starts fresh
        assert torch.equal(depth.state_dict()[k], v), k
    assert all(k.startswith("head.") for k in report.unused)
    assert report.mean == (0.1, 0.2, 0.3) and report.norm_source == "from the weights file"


def test_classify_on_a_detect_preset_transfers_exactly(shapes_root, tmp_path):
    cls = Model("yolo-n", task="classify")
    cls.train(**TINY, data=str(shapes_root / "data.yaml"), project=str(tmp_path), epochs=1)
    best = cls.ckpt_path
    det = _net("yolo-n", task="detect")
    report = load_weights(det, best)
    assert report.backbone_loaded == 1.0
    stored = torch.load(best, weights_only=True)["state_dict"]
    backbone = {k: v for k, v in det.state_dict().items() if k.startswith("backbone.")}
    assert backbone and set(backbone) <= set(stored)
    _assert_backbone_equal(det, {k: stored[k] for k in backbone})
    assert not any(k.startswith("neck.") for k, _, _ in report.loaded)  # a classifier has no PAN neck

    # through training: the report lands in the run folder and the weights' normalisation is used
    m = Model("yolo-n")
    m.train(
        **{**TINY, "imgsz": 64},
        data=str(shapes_root / "data.yaml"),
        project=str(tmp_path),
        epochs=1,
        close_mosaic=0,
        weights=str(best),
        freeze="backbone",
        lr_backbone=0.5,
    )
    report_json = json.loads((m.save_dir / "weights_report.json").read_text())
    assert report_json["backbone_loaded"] == 1.0 and report_json["source"] == str(best)
    assert (m.save_dir / "weights_report.txt").read_text().startswith("weights ")
    ckpt = torch.load(m.ckpt_path, weights_only=True)
    assert ckpt["mean"] == cls.ckpt["mean"] and ckpt["std"] == cls.ckpt["std"]
    assert ckpt["transfer"]["freeze"] == "backbone" and ckpt["transfer"]["lr_backbone"] == 0.5
    assert ckpt["train_args"]["freeze"] == "backbone"
    # the frozen backbone is the classifier's, unchanged by a detection epoch (the EMA of equal weights rounds)
    for k in backbone:
        if not k.endswith("num_batches_tracked"):
            assert torch.allclose(ckpt["state_dict"][k], stored[k], rtol=1e-5, atol=1e-6), k


def test_user_mean_std_win_over_the_weights(shapes_root, tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    kw = {**TINY, "data": str(shapes_root / "data.yaml"), "epochs": 1, "weights": str(tmp_path / "r18.pth")}
    a = Model("resnet18", task="classify")
    a.train(**kw, project=str(tmp_path / "a"))
    assert a.ckpt["mean"] == pytest.approx(list(IMAGENET_MEAN))
    b = Model("resnet18", task="classify")
    b.train(**kw, project=str(tmp_path / "b"), mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    assert b.ckpt["mean"] == [0.5] * 3 and b.ckpt["std"] == [0.2] * 3
    with pytest.raises(UsageError, match="mean=.* has 2 values"):
        Model("resnet18", task="classify").train(**kw, project=str(tmp_path / "c"), mean=[0.5, 0.5])


def _step(net, args):
    opt, _ = build_optimizer(net, args)
    net.train()
    out = net(torch.randn(4, 3, 64, 64))
    out.float().pow(2).mean().backward()
    opt.step()
    return opt


@pytest.mark.parametrize("backbone", ["resnet18", "timm/mobilenetv3_small_050"])
def test_freeze_backbone_keeps_weights_and_batchnorm_statistics(backbone):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    net = _net(backbone)
    info = freeze(net, "backbone")
    assert info["frozen_params"] == sum(p.numel() for p in net.backbone.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _step(net, resolve({"lr0": 0.1}))
    after = net.state_dict()
    for k, v in before.items():
        if k.startswith("backbone."):
            assert torch.equal(after[k], v), k  # weights and running statistics
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("head."))


@pytest.mark.parametrize("backbone", ["resnet18", "timm/mobilenetv3_small_050"])
def test_freeze_first_stages_only(backbone):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    net = _net(backbone)
    freeze(net, 2)
    from visionkit.models.weights import backbone_stages

    stages = backbone_stages(net.backbone)
    frozen = [p for m in stages[0] + stages[1] for p in m.parameters()]
    rest = [p for stage in stages[2:] for m in stage for p in m.parameters()]
    assert frozen and rest and len(frozen) + len(rest) == len(list(net.backbone.parameters()))
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in rest)
    bn = [m for m in stages[1] if isinstance(m, torch.nn.BatchNorm2d)]
    bn = bn or [m for s in stages[1] for m in s.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = bn[0].running_mean.clone()
    _step(net, resolve({"lr0": 0.1}))
    assert torch.equal(bn[0].running_mean, stats)
    with pytest.raises(UsageError, match=f"has {len(stages)} stages"):
        freeze(_net(backbone), len(stages) + 1)


def test_lr_backbone_makes_its_own_groups():
    net = _net("resnet18")
    opt, desc = build_optimizer(net, resolve({"lr0": 0.01, "lr_backbone": 0.1, "optimizer": "sgd"}))
    bb = {id(p) for p in net.backbone.parameters()}
    groups = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert set(groups) == {id(p) for p in net.parameters()}
    for pid, g in groups.items():
        assert g["lr"] == pytest.approx(0.001 if pid in bb else 0.01)
        assert (g.get("name") == "backbone") == (pid in bb)
    assert "backbone lr × 0.1" in desc
    plain, _ = build_optimizer(net, resolve({"lr0": 0.01}))
    assert len(plain.param_groups) == 2


def test_bad_values_are_usage_errors():
    for bad in ({"freeze": "neck"}, {"freeze": -1}, {"lr_backbone": -0.1}, {"min_loaded": 1.5}, {"sha256": "abc"}):
        with pytest.raises(UsageError):
            resolve(bad)
    assert resolve({"freeze": 3}).freeze == 3 and resolve({"freeze": "backbone"}).freeze == "backbone"

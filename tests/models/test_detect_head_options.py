"""Detection head options: ``reg_max=1`` (distances regressed directly, no DFL) and ``cls_convs='separable'``
(a depthwise-separable class branch): what they build, decode and learn, and what they refuse."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from visionkit.errors import UsageError
from visionkit.models.build import build_model
from visionkit.registry import REGISTRY
from visionkit.tasks.detect.loss import DetectionLoss, EndToEndLoss


def net_with(head: dict, preset: str = "yolo-n"):
    torch.manual_seed(0)
    cfg = REGISTRY.build("model", preset)
    cfg.update(num_classes=3, head={**cfg["head"], **head})
    return build_model(cfg)


def flops(net, size=64) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net.eval()(torch.randn(1, 3, size, size))
    return fc.get_total_flops()


def test_dfl_free_head_outputs_four_distances_and_decodes_positive_sides():
    net = net_with({"reg_max": 1}).eval()
    with torch.no_grad():
        outputs = net(torch.rand(1, 3, 64, 64))
        boxes, scores = net.head.decode(outputs)
    assert [o.shape[1] for o in outputs] == [4 + 3] * 3
    assert boxes.shape == (1, 84, 4) and scores.shape == (1, 84, 3)
    assert bool((boxes[..., 2:] > boxes[..., :2]).all())  # softplus distances: every box has positive size


def test_lighter_options_cost_fewer_flops():
    full = flops(net_with({}))
    assert flops(net_with({"reg_max": 1})) < full
    assert flops(net_with({"cls_convs": "separable"})) < full


@pytest.mark.parametrize("head", [{"reg_max": 1}, {"reg_max": 1, "cls_convs": "separable", "name": "yolo_e2e"}])
def test_dfl_free_head_learns_a_box(head):
    """A few steps on one image: the loss falls and the DFL part stays zero (there is no distribution)."""
    net = net_with(head).train()
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.3]])
    x = torch.rand(1, 3, 64, 64)
    loss_fn = EndToEndLoss(net.head) if head.get("name") == "yolo_e2e" else DetectionLoss(net.head)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        total, parts = loss_fn(net(x), targets, (64, 64))
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
        assert parts["dfl"] == 0.0
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize(
    ("head", "message"),
    [({"reg_max": 0}, "reg_max=0"), ({"reg_max": 1.5}, "reg_max=1.5"), ({"cls_convs": "dw"}, "cls_convs='dw'")],
)
def test_bad_head_options_are_refused_by_name(head, message):
    with pytest.raises(UsageError, match=message):
        net_with(head)

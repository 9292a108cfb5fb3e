import math

import pytest
import torch

from tests.conftest import TINY
from visionkit import Model
from visionkit.engine.lrfinder import suggest


def test_suggestion_is_the_steepest_descent():
    lrs = [10 ** (-6 + 0.1 * i) for i in range(61)]
    # a loss that falls fastest at lr = 1e-3 (a logistic step in log-lr)
    losses = [2.0 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 3))) for lr in lrs]
    out = suggest(lrs, losses)
    assert out["suggested_lr"] == pytest.approx(1e-3, rel=0.3)


def test_lrfind_leaves_weights_untouched(classify_dir, tmp_path):
    m = Model("mnist-tiny")
    m.lrfind(**TINY, data=str(classify_dir), project=str(tmp_path), num_iter=3)  # builds the net: 4 classes, RGB
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    result = m.lrfind(**TINY, data=str(classify_dir), project=str(tmp_path), num_iter=12, start_lr=1e-5, end_lr=1.0)
    after = m.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert 1e-5 <= result["suggested_lr"] <= 1.0 and len(result["lrs"]) <= 12
    assert result["lrs"] == sorted(result["lrs"])
    assert (m.save_dir / "lrfind.png").is_file()

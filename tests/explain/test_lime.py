"""LIME (visionkit.explain.lime and method=lime): SLIC keeps to colour edges; on images whose score depends only on a
known region (a hand-set classifier, a stub detector) LIME's top region is that region; the command line writes
the overlays; runs repeat with one seed; bad keys are clear errors. Needs no grad-cam library."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import run_cli
from visionkit import Model
from visionkit.errors import UsageError
from visionkit.explain import explain
from visionkit.explain.keys import split_explain_keys
from visionkit.explain.lime import kernel_weights, sample_masks, slic, weighted_ridge
from visionkit.tasks.detect.explain import DetectExplainer
from visionkit.tasks.shared import letterbox_batch

QUICK = {"lime_samples": 150, "lime_segments": 30, "verbose": False}


def _blocks(h: int, w: int, seed: int, low: int = 0, high: int = 90) -> np.ndarray:
    """A dark BGR image of random 8×8 colour blocks (texture for the superpixels to follow)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(low, high, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w])


def _bright(image: np.ndarray, box: tuple[int, int, int, int], seed: int) -> None:
    """Paint the (x1, y1, x2, y2) box with bright texture, in place."""
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = _blocks(y2 - y1, x2 - x1, seed, 170, 255)


def _mass(cam: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    return float(cam[y1:y2, x1:x2].sum() / max(cam.sum(), 1e-9))


def _inside(segments: np.ndarray, segment: int, box: tuple[int, int, int, int]) -> float:
    """The fraction of the superpixel's pixels inside the box."""
    x1, y1, x2, y2 = box
    mine = segments == segment
    return float(mine[y1:y2, x1:x2].sum() / mine.sum())


# -- the parts ---------------------------------------------------------------------------------------------------------
def test_slic_respects_a_strong_colour_edge():
    h, w, edge = 60, 90, 41  # the edge falls between grid lines, not on one
    rng = np.random.default_rng(0)
    image = np.zeros((h, w, 3), np.int64)
    image[:, :edge], image[:, edge:] = (200, 60, 20), (30, 170, 230)
    image = np.clip(image + rng.integers(-25, 25, image.shape), 0, 255).astype(np.uint8)  # noisy, as photos are
    segments = slic(image, 24)
    k = int(segments.max()) + 1
    assert segments.shape == (h, w) and segments.dtype == np.int32
    assert sorted(np.unique(segments)) == list(range(k)) and 12 <= k <= 36  # near the number asked
    for s in range(k):
        mine = segments == s
        left = mine[:, :edge].sum() / mine.sum()
        assert left >= 0.97 or left <= 0.03, (s, left)  # each superpixel keeps to one side of the edge
        pieces, _ = cv2.connectedComponents(mine.astype(np.uint8), connectivity=4)
        assert pieces - 1 == 1, f"superpixel {s} is in {pieces - 1} pieces"
    flat = np.full((h, w, 3), 128, np.uint8)
    assert int(slic(flat, 12).max()) + 1 >= 6  # no colour at all: a grid of compact cells
    assert slic(flat[:5, :7], 200).max() < 35  # more asked than pixels allow: still labels every pixel


def test_sampling_kernel_and_ridge():
    masks = sample_masks(np.random.default_rng(0), 400, 10)
    assert masks[0].all() and masks.any(1).all()  # the whole image first; every copy keeps something
    counts = masks[1:].sum(1)
    assert counts.min() == 1 and counts.max() == 10  # how many stay on is uniform over 1..10
    weights = kernel_weights(masks)
    assert weights[0] == 1.0 and np.all(np.diff(weights[np.argsort(-masks.sum(1))]) <= 1e-12)  # fewer on, less weight
    assert kernel_weights(np.array([[True, False, False, False]]))[0] == pytest.approx(np.exp(-4))  # D = 1 - 1/2
    truth = np.array([3.0, -2.0, 0.0, 0.5, 0, 0, 0, 0, 0, 0])
    y = masks @ truth + 1.5
    coef, intercept, fit = weighted_ridge(masks, y, weights, alpha=1e-6)
    np.testing.assert_allclose(coef, truth, atol=1e-4)
    assert intercept == pytest.approx(1.5, abs=1e-4) and fit == pytest.approx(1.0)
    assert weighted_ridge(masks, np.ones(400), weights)[2] == 0.0  # a constant score: nothing to explain


# -- the score depends only on a known region: LIME must find it -----------------------------------------------------
class PatchLogit(nn.Module):
    """A classifier whose class-0 logit is the mean brightness of one fixed patch of its input (fractions of the
    input's height and width), every other logit 0."""

    def __init__(self, classes: int, rows: tuple[float, float], cols: tuple[float, float]):
        super().__init__()
        self.classes, self.rows, self.cols = classes, rows, cols
        self.anchor = nn.Parameter(torch.zeros(()))  # so that .to(device) and .eval() have something to act on

    def forward(self, x):
        h, w = x.shape[-2:]
        patch = x[..., int(self.rows[0] * h) : int(self.rows[1] * h), int(self.cols[0] * w) : int(self.cols[1] * w)]
        out = torch.zeros(len(x), self.classes, device=x.device)
        out[:, 0] = 4 * patch.mean((1, 2, 3)) + self.anchor
        return out


def test_lime_finds_the_patch_a_classifier_looks_at(tiny, tmp_path):
    model = tiny("classify")
    h, w = 96, 128  # not square: the classifier resizes, the superpixels stay at the original size
    patch = (64, 24, 96, 48)  # x1 y1 x2 y2: columns 0.5-0.75, rows 0.25-0.5
    distractor = (8, 60, 48, 90)  # just as bright, but the classifier never looks there
    image = _blocks(h, w, 1)
    _bright(image, patch, 2)
    _bright(image, distractor, 3)
    model._net = PatchLogit(len(model.names), (0.25, 0.5), (0.5, 0.75))
    result = explain(model, source=image, method="lime", project=str(tmp_path), **QUICK)[0]
    assert result["method"] == "lime" and result["layer"] is None
    e = result["explanations"][0]
    assert e["target"] == model.names[0] and e["layer"] is None
    cam, segments = e["_cam"], e["_superpixels"]
    assert cam.shape == (h, w) and cam.dtype == np.float32 and cam.max() == 1.0 and cam.min() >= 0
    assert segments.shape == (h, w)
    top = [r["superpixel"] for r in e["regions"]]
    assert 1 <= len(top) <= 5 and [r["weight"] for r in e["regions"]] == sorted(
        (r["weight"] for r in e["regions"]), reverse=True
    )
    assert _inside(segments, top[0], patch) >= 0.6  # the strongest superpixel lies in the patch
    assert _mass(cam, patch) >= 0.7 and _mass(cam, distractor) <= 0.05
    assert e["fit"] > 0.5  # the score is linear in the patch's pixels: the local model fits it
    overlay = cv2.imread(e["overlay"])
    assert overlay.shape == (h, w, 3) and Path(e["overlay"]).name == "array0_lime.jpg"
    outside = np.ones((h, w), bool)
    outside[np.isin(segments, top)] = False
    assert overlay[outside].mean() < 0.5 * image[outside].mean() + 10  # the rest is dimmed
    saved = json.loads((Path(e["overlay"]).parent / "explanations.json").read_text())[0]["explanations"][0]
    assert saved["regions"] == e["regions"] and "_cam" not in saved and "_superpixels" not in saved

    # the same seed repeats the run exactly; another seed samples other copies
    again = explain(model, source=image, method="lime", project=str(tmp_path), **QUICK)[0]["explanations"][0]
    np.testing.assert_array_equal(again["_cam"], cam)
    other = explain(model, source=image, method="lime", project=str(tmp_path), seed=7, **QUICK)
    assert not np.array_equal(other[0]["explanations"][0]["_cam"], cam)
    # the classifier looking at the other patch moves the explanation there: the test can fail
    model._net = PatchLogit(len(model.names), (60 / 96, 90 / 96), (8 / 128, 48 / 128))
    moved = explain(model, source=image, method="lime", project=str(tmp_path), **QUICK)[0]["explanations"][0]
    assert _mass(moved["_cam"], distractor) >= 0.7 and _mass(moved["_cam"], patch) <= 0.05


class StubHead(nn.Module):
    """A detector head with three fixed anchors (boxes in input pixels) for two classes: anchor 0 is the target box,
    scored (class 0) by the brightness inside it; anchor 1 lies elsewhere, scored higher by the brightness inside
    its own box; anchor 2 overlaps the target box less than half (IoU 0.33), scored by anchor 1's brightness too."""

    def __init__(self, target: list[float], elsewhere: list[float]):
        super().__init__()
        x1, y1, x2, y2 = target
        shifted = [x1 + (x2 - x1) / 2, y1, x2 + (x2 - x1) / 2, y2]
        self.boxes = torch.tensor([target, elsewhere, shifted])

    @staticmethod
    def brightness(x, box):
        x1, y1, x2, y2 = (int(v) for v in box)
        return x[:, :, y1:y2, x1:x2].mean((1, 2, 3))

    def decode(self, x):
        b = len(x)
        here, there = self.brightness(x, self.boxes[0]), self.brightness(x, self.boxes[1])
        scores = torch.zeros(b, 3, 2)
        scores[:, 0, 0], scores[:, 1, 0], scores[:, 2, 0] = 0.9 * here, there, there
        return self.boxes.expand(b, 3, 4), scores


class StubDetector(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x):
        return x


class LetterboxTask:
    """What LIME's driver asks of a detection task: its input loading (a letterbox)."""

    def load_inputs(self, items, imgsz, channels, mean, std, rect=False):
        return letterbox_batch(items, imgsz, rect)


def test_detect_lime_explains_the_target_box_found_again(tmp_path):
    from visionkit.explain import _lime_explanations

    h, w, imgsz = 96, 128, 64
    box, elsewhere = (70, 20, 110, 60), (8, 50, 48, 90)  # original pixels
    image = _blocks(h, w, 4)
    _bright(image, box, 5)
    _bright(image, elsewhere, 6)
    x, context = letterbox_batch([image], imgsz, False)
    (sx, sy), (left, top) = context[0]["scale"], context[0]["pad"]
    to_input = lambda b: [b[0] * sx + left, b[1] * sy + top, b[2] * sx + left, b[3] * sy + top]  # noqa: E731
    explainer = DetectExplainer()
    wrapped = explainer.wrap(StubDetector(StubHead(to_input(box), to_input(elsewhere))), None)
    output = wrapped(x)
    own = float(output[0, 0, 4])
    prediction = {"detections": [{"class": 0, "name": "thing", "score": own, "box": list(map(float, box))}]}
    (target,) = explainer.targets(output, prediction, None, ["thing", "other"], context[0])
    assert float(target.lime()(output[0])) == pytest.approx(own)  # the box's own score at the unperturbed image
    assert float(output[0, 1, 4]) > own  # a max over every anchor of the class would explain the other box

    meta = {"imgsz": imgsz, "in_channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]}
    opts = {"lime_samples": 150, "lime_segments": 30, "lime_top": 3, "lime_fill": "mean"}
    (e,) = _lime_explanations(image, [target], LetterboxTask(), wrapped, meta, "cpu", opts, 0)
    assert e["target"] == "0: thing" and e["score"] == pytest.approx(own, abs=1e-5)  # rounded to 6 decimals
    assert _inside(e["_superpixels"], e["regions"][0]["superpixel"], box) >= 0.6
    assert _mass(e["_cam"], box) >= 0.7 and _mass(e["_cam"], elsewhere) <= 0.05
    assert e["_picture"].shape == (h, w, 3)


# -- command line and keys ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_explain_lime(tiny, image, tmp_path):
    ckpt = str(tiny("classify").ckpt_path)
    common = ("classify", "explain", f"model={ckpt}", f"source={image}", "method=lime", f"project={tmp_path}")
    r = run_cli(*common, "lime_samples=40", "lime_segments=10", "lime_top=2", "lime_fill=blur")
    assert r.returncode == 0, r.stderr
    overlays = list((tmp_path / "classify").glob("explain*/*_lime.jpg"))
    assert len(overlays) == 1 and cv2.imread(str(overlays[0])).shape == cv2.imread(image).shape
    saved = json.loads((overlays[0].parent / "explanations.json").read_text())[0]
    assert saved["method"] == "lime" and len(saved["explanations"][0]["regions"]) <= 2
    r = run_cli(*common, "lime_samples=5")
    assert r.returncode == 2 and "bad value lime_samples=5: expected an integer in [10, 100000]" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_lime_keys_are_clear_errors():
    opts, rest = split_explain_keys({"method": "lime", "lime_samples": 64, "imgsz": 32})
    assert opts["lime_samples"] == 64 and opts["lime_segments"] == 50 and opts["lime_fill"] == "mean"
    assert rest == {"imgsz": 32}
    assert split_explain_keys(opts) == (opts, {})  # split again (the CLI splits, explain() splits once more)
    assert "lime_samples" not in split_explain_keys({"method": "gradcam"})[0]
    bad = {
        "lime_samples": (0, r"bad value lime_samples=0: expected an integer in \[10, 100000\]"),
        "lime_segments": (2.5, r"bad value lime_segments=2.5: expected an integer in \[2, 2000\]"),
        "lime_top": (0, r"bad value lime_top=0: expected an integer"),
        "lime_fill": ("noise", r"bad value lime_fill='noise': choose one of mean, blur"),
    }
    for key, (value, message) in bad.items():
        with pytest.raises(UsageError, match=message):
            split_explain_keys({"method": "lime", key: value})
    with pytest.raises(UsageError, match=r"lime_top= apply to method=lime only \(method=gradcam\)"):
        split_explain_keys({"lime_top": 3})
    with pytest.raises(UsageError, match=r"layer='backbone' does not apply to method=lime: LIME perturbs the input"):
        split_explain_keys({"method": "lime", "layer": "backbone"})
    with pytest.raises(UsageError, match=r"method='lim': choose one of .*lime.*Did you mean 'lime'"):
        split_explain_keys({"method": "lim"})


def test_exported_and_untrained_models_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"explain needs a trained \.pt checkpoint"):
        explain(Model("mnist-tiny"), source=np.zeros((8, 8, 3), np.uint8), method="lime", project=str(tmp_path))

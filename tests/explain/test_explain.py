"""Explain: CAMs of every method on every task's tiny model, the localisation property (the map falls where the
decision is made), bad keys, the misclassification gallery and the CLI."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TINY, run_cli, train_tiny
from visionkit import Model
from visionkit.errors import UsageError

pytest.importorskip("pytorch_grad_cam", reason="explain needs grad-cam: pip install 'visionkit[explain]'")
from visionkit.explain import METHODS, explain, gallery  # noqa: E402

TASK_MODELS = {"classify": "mnist-tiny", "detect": "yolo-n", "segment": "unet-n", "depth": "depth-n"}


@pytest.fixture(scope="module")
def tiny_models(shapes_root, tmp_path_factory):
    return {task: train_tiny(task, name, shapes_root, tmp_path_factory) for task, name in TASK_MODELS.items()}


QUADRANTS = ((0, 0), (0, 32), (32, 0), (32, 32))  # (top, left) of each 32×32 quadrant of a 64×64 image


def _quadrant_dataset(root: Path, n: int, seed: int) -> Path:
    """64×64 noise images with one bright shape, a disc ('disc') or a square ('square'), inside one quadrant
    (random per image, named in the file: *_q2.png); the other three quadrants hold only noise, so the decision
    can only come from that quadrant."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", n // 4)):
        for i in range(count):
            cls = ("disc", "square")[i % 2]
            q = int(rng.integers(4))
            img = rng.integers(0, 70, (64, 64, 3), dtype=np.uint8)
            top, left = QUADRANTS[q]
            cy, cx = top + int(rng.integers(10, 22)), left + int(rng.integers(10, 22))
            if cls == "disc":
                cv2.circle(img, (cx, cy), 8, (255, 255, 255), -1)
            else:
                cv2.rectangle(img, (cx - 7, cy - 7), (cx + 7, cy + 7), (255, 255, 255), -1)
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / cls / f"{i:04d}_q{q}.png"), img)
    return root


@pytest.mark.slow
def test_the_cam_falls_where_the_decision_is_made(tmp_path):
    data = _quadrant_dataset(tmp_path / "quadrants", 320, 0)
    m = Model("mnist-tiny")
    metrics = m.train(
        data=str(data),
        imgsz=64,
        epochs=8,
        batch=32,
        workers=0,
        optimizer="adamw",
        lr0=0.003,
        scheduler="onecycle",
        fliplr=0.0,
        degrees=0.0,
        crop_scale=1.0,
        color_jitter=0.0,
        verbose=False,
        plots=False,
        project=str(tmp_path / "runs"),
    )
    assert metrics["top1"] >= 0.9  # the decision was learnt (else the map has nothing to show)
    images = sorted((data / "val").glob("*/*.png"))[:16]
    for method in ("gradcam", "gradcam++"):
        results = explain(
            m, source=[str(p) for p in images], method=method, verbose=False, project=str(tmp_path / "runs")
        )
        hits, fractions = [], []
        assert sorted(r["image"] for r in results) == sorted(map(str, images))
        for r in results:
            cam = r["explanations"][0]["_cam"]
            assert cam.shape == (64, 64) and cam.dtype == np.float32
            top, left = QUADRANTS[int(Path(r["image"]).stem[-1])]
            y, x = np.unravel_index(cam.argmax(), cam.shape)
            hits.append(top <= y < top + 32 and left <= x < left + 32)
            above = np.where(cam >= 0.5, cam, 0)  # the map's strong part, without its noise floor
            fractions.append(above[top : top + 32, left : left + 32].sum() / max(above.sum(), 1e-9))
        # the pointing game (the map's peak lies in the shape's quadrant) and the mass of its strong part there;
        # chance is 0.25 for both (one quadrant of four)
        assert np.mean(hits) >= 0.75 and np.mean(fractions) > 0.5, (method, np.mean(hits), np.mean(fractions))


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASK_MODELS))
def test_every_method_runs_on_every_task(tiny_models, shapes_root, task, tmp_path):
    model = Model(str(tiny_models[task].ckpt_path))
    image = sorted((shapes_root / "images/val").glob("*.jpg"))[0]
    h, w = cv2.imread(str(image)).shape[:2]
    for method in METHODS:
        target = {"classify": None, "detect": None, "segment": None, "depth": f"0,0,{w // 2},{h // 2}"}[task]
        results = explain(
            model, source=str(image), method=method, target=target, conf=0.001, verbose=False, project=str(tmp_path)
        )
        assert len(results) == 1 and results[0]["method"] == method and results[0]["layer"]
        assert results[0]["explanations"], f"{task}/{method}: nothing explained"
        for e in results[0]["explanations"]:
            cam = e["_cam"]
            assert cam.shape == (h, w) and 0.0 <= cam.min() and cam.max() <= 1.0 and np.isfinite(cam).all()
            assert Path(e["overlay"]).is_file() and cv2.imread(e["overlay"]).shape[:2] == (h, w)


def test_bad_method_layer_and_target_are_clear_errors(tiny_models, shapes_root, tmp_path):
    model = Model(str(tiny_models["classify"].ckpt_path))
    image = str(sorted((shapes_root / "images/val").glob("*.jpg"))[0])
    common = {"source": image, "verbose": False, "project": str(tmp_path)}
    with pytest.raises(UsageError, match=r"method='gradcamm': choose one of gradcam, .*Did you mean 'gradcam'"):
        explain(model, method="gradcamm", **common)
    with pytest.raises(UsageError, match=r"layer='backbone.nope'.*Spatial layers .*backbone\.stages\.\d"):
        explain(model, layer="backbone.nope", **common)
    with pytest.raises(UsageError, match=r"target='zebra'.*classes: circle, square"):
        explain(model, target="zebra", **common)
    layer = explain(model, layer="backbone.stages.1", **common)[0]["layer"]
    assert layer == "backbone.stages.1"
    detector = Model(str(tiny_models["detect"].ckpt_path))
    with pytest.raises(UsageError, match=r"target=99: the image has \d+ detection"):
        explain(detector, target=99, conf=0.001, **common)
    depth = Model(str(tiny_models["depth"].ckpt_path))
    with pytest.raises(UsageError, match=r"depth takes a region x1,y1,x2,y2"):
        explain(depth, target="5,5,1,1", **common)


def test_gallery_shows_the_most_confident_mistakes(tiny_models, tmp_path):
    from visionkit.explain.gallery import most_confident_mistakes

    model = Model(str(tiny_models["classify"].ckpt_path))
    args, data, loader, device = model.val_loader(workers=0)
    net = model.net.eval()
    everything = most_confident_mistakes(net, loader, device, 10_000)
    wrong = sum(1 for x, y in loader for p, t in zip(net(x).argmax(1).tolist(), y.tolist()) if p != t)
    assert len(everything) == wrong > 0  # a one-epoch model at 64 px makes mistakes
    scores = [s for s, *_ in everything]
    assert scores == sorted(scores, reverse=True) and all(p != t for _, p, t, _ in everything)
    top3 = most_confident_mistakes(net, loader, device, 3)
    assert [s for s, *_ in top3] == scores[:3]
    model.val(**{**TINY, "imgsz": 64}, project=str(tmp_path))
    path = gallery(model, count=3, **{**TINY, "imgsz": 64}, project=str(tmp_path))
    assert path == model.save_dir / "gallery.png"
    assert cv2.imread(str(path)).shape == (330, 900, 3)  # three tiles in one row: 3 × 3 in by 3.3 in at 100 dpi
    with pytest.raises(UsageError, match="gallery=0"):
        gallery(model, count=0)


@pytest.mark.slow
def test_cli_explain_and_gallery(tiny_models, shapes_root, tmp_path):
    ckpt = str(tiny_models["classify"].ckpt_path)
    image = str(sorted((shapes_root / "images/val").glob("*.jpg"))[0])
    r = run_cli(
        "classify",
        "explain",
        f"model={ckpt}",
        f"source={image}",
        "method=eigencam",
        f"project={tmp_path}",
        "verbose=false",
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "classify").glob("explain*/*_eigencam.jpg"))) == 1
    r = run_cli("classify", "explain", f"model={ckpt}", f"source={image}", "method=lime", f"project={tmp_path}")
    assert r.returncode == 2 and "method='lime': choose one of" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("classify", "val", f"model={ckpt}", "gallery=4", "imgsz=64", "workers=0", f"project={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "classify").glob("val*/gallery.png"))) == 1

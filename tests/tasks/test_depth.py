"""Monocular depth: every metric and the alignment against a direct numpy computation, the losses' invariances,
data checks, calibration, prediction outputs and exports."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import TINY, run_cli
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.data.format import write_data_yaml
from visionkit.errors import DataError
from visionkit.tasks.depth.dataset import DepthDataset
from visionkit.tasks.depth.loss import least_squares_fit, metric_loss, relative_loss
from visionkit.tasks.depth.metrics import align_inverse, depth_errors, score_image
from visionkit.tasks.depth.task import DepthTask

DEPTH = {**TINY, "imgsz": 64, "device": "cpu"}


def direct_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The textbook definitions, one pixel list at a time, independent of the package."""
    p = np.array([v for v, g in zip(pred.ravel(), gt.ravel()) if g > 0])
    g = np.array([v for v in gt.ravel() if v > 0])
    out = {
        "abs_rel": np.mean(abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        "log10": np.mean(abs(np.log10(p) - np.log10(g))),
    }
    d = np.log(p) - np.log(g)
    out["silog"] = 100 * np.sqrt(np.mean(d**2) - np.mean(d) ** 2)
    for k in (1, 2, 3):
        out[f"delta{k}"] = np.mean([max(a / b, b / a) < 1.25**k for a, b in zip(p, g)])
    return out


def test_every_metric_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 10, (12, 16))
    gt[0, :5] = 0  # invalid pixels are left out
    pred = gt * rng.uniform(0.7, 1.4, gt.shape)
    got, want = depth_errors(pred, gt), direct_metrics(pred, gt)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert 0 < got["delta1"] < got["delta2"] <= got["delta3"] <= 1


def test_relative_predictions_are_aligned_by_least_squares():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 5, (10, 10))
    gt[3, 3] = 0
    inverse = 1 / np.where(gt > 0, gt, 1)
    pred = 3.0 * inverse - 0.2  # right up to scale and shift
    aligned = align_inverse(pred, gt)
    assert np.allclose(aligned[gt > 0], inverse[gt > 0], atol=1e-9)
    m = score_image(pred, gt, "inverse_depth", None)
    assert m["abs_rel"] == pytest.approx(0, abs=1e-9) and m["delta1"] == 1.0
    # the same alignment by hand: the normal equations of min Σ (s p + t - 1/gt)²
    v = gt > 0
    a = np.stack([pred[v], np.ones(v.sum())], 1)
    s, t = np.linalg.solve(a.T @ a, a.T @ (1 / gt[v]))
    noisy = pred + rng.normal(0, 0.01, pred.shape)
    want = direct_metrics(np.clip(1 / align_inverse(noisy, gt), 1e-3, gt.max()), gt)
    assert score_image(noisy, gt, "inverse_depth", None)["abs_rel"] == pytest.approx(want["abs_rel"], rel=1e-9)
    assert (s, t) == pytest.approx((1 / 3.0, 0.2 / 3.0), rel=1e-9)
    # metric models are not aligned: a scaled prediction is wrong by that scale
    assert score_image(2 * gt, gt, "metres", 100.0)["abs_rel"] == pytest.approx(1.0)


def test_losses_are_invariant_as_designed():
    torch.manual_seed(0)
    depth = torch.rand(2, 16, 16) * 4 + 1
    depth[:, :2] = 0  # invalid rows
    pred = torch.randn(2, 16, 16)
    base, _ = relative_loss(pred, depth)
    scaled, _ = relative_loss(pred * 5 + 3, depth)
    assert float(scaled) == pytest.approx(float(base), rel=1e-4)  # scale and shift of the prediction: no change
    perfect, _ = relative_loss(1 / depth.clamp(min=1e-6) * 2 + 1, depth)
    assert float(perfect) < 1e-4 < float(base)
    s, t = least_squares_fit(pred, pred * 2 + 1, depth > 0)
    assert torch.allclose(s, torch.full((2,), 2.0), atol=1e-4) and torch.allclose(t, torch.ones(2), atol=1e-4)
    exact, _ = metric_loss(torch.log(depth.clamp(min=1e-6)), depth)
    shifted, _ = metric_loss(torch.log(depth.clamp(min=1e-6)) + 0.5, depth)
    assert float(exact) < 1e-4 and float(shifted) == pytest.approx(0.5 * (1 - 0.85) ** 0.5, rel=1e-3)


def depth_dataset(root: Path, kind: str = "png", sizes=((64, 48), (48, 64), (64, 64))) -> Path:
    """Scenes with exact depth: a tilted floor plane and a nearer box (depth known per pixel)."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "depth" / split).mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            yy = np.mgrid[0:h, 0:w][0]
            depth = 2.0 + 3.0 * (1 - yy / h)  # far at the top, near at the bottom
            depth[h // 4 : h // 2, w // 4 : w // 2] = 1.2
            img = np.clip(255 - depth[..., None] * 40, 0, 255).astype(np.uint8).repeat(3, 2)
            cv2.imwrite(str(root / "images" / split / f"{k}.png"), img)
            if kind == "png":
                cv2.imwrite(str(root / "depth" / split / f"{k}.png"), np.round(depth * 1000).astype(np.uint16))
            else:
                np.save(root / "depth" / split / f"{k}.npy", depth.astype(np.float32))
    data = {"path": ".", "train": "images/train", "val": "images/val", "names": ["scene"]}
    if kind == "png":
        data["depth_scale"] = 1000.0
    write_data_yaml(root / "data.yaml", data)
    return root / "data.yaml"


def val_set(root: Path, depth_scale=1000.0) -> DepthDataset:
    files = sorted((root / "images/val").glob("*.png"))
    return DepthDataset(files, 64, False, resolve({"rect": False}, DepthTask.keys), depth_scale, verbose=False)


@pytest.mark.parametrize(
    "case, message",
    [
        ("size", r"is 32×24 but its image .* is 64×48"),
        ("8bit", "is 8-bit; depth PNGs must be single-channel 16-bit"),
        ("rgb", "is an RGB image"),
        ("scale", "has no 'depth_scale'"),
    ],
)
def test_bad_depth_files_are_clear_errors(tmp_path, case, message):
    depth_dataset(tmp_path / "d")
    path = tmp_path / "d/depth/val/0.png"
    if case == "size":
        cv2.imwrite(str(path), np.ones((24, 32), np.uint16))
    elif case == "8bit":
        cv2.imwrite(str(path), np.ones((48, 64), np.uint8))
    elif case == "rgb":
        cv2.imwrite(str(path), np.ones((48, 64, 3), np.uint8))
    with pytest.raises(DataError, match=message):
        val_set(tmp_path / "d", None if case == "scale" else 1000.0)


def test_invalid_values_are_counted_and_empty_maps_skipped(tmp_path):
    depth_dataset(tmp_path / "d", kind="npy")
    bad = np.load(tmp_path / "d/depth/val/0.npy")
    bad[:5] = np.nan
    bad[5:10] = -1.0
    np.save(tmp_path / "d/depth/val/0.npy", bad)
    np.save(tmp_path / "d/depth/val/1.npy", np.zeros((64, 48), np.float32))
    with pytest.warns(UserWarning, match="1 images skipped: no valid depth pixel") as caught:
        ds = val_set(tmp_path / "d", None)
    # the first UserWarning (a file an earlier test left open may add a ResourceWarning when it is collected)
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert "640 negative or non-finite depth values" in said[0], said
    assert len(ds) == 2
    img, depth, meta = ds[[f.stem for f in ds.files].index("0")]
    assert (meta["gt"][:10] == 0).all() and (meta["gt"][10:] > 0).all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    data = depth_dataset(root / "d")
    m = Model("depth-n", task="depth")
    m.train(data=str(data), epochs=2, project=str(root / "runs"), **DEPTH)
    return m, data, root


def test_calibration_turns_a_relative_model_into_metres(trained, tmp_path):
    m, data, root = trained
    ckpt = tmp_path / "calibrated.pt"
    ckpt.write_bytes(Path(m.ckpt_path).read_bytes())
    r = run_cli("depth", "calibrate", f"model={ckpt}", f"data={data}", "imgsz=64", "batch=4", "workers=0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "metres = 1 / (" in r.stdout and "before (per-image aligned)" in r.stdout
    cal = torch.load(ckpt, weights_only=True)
    scale, shift = cal["calibration"]["scale"], cal["calibration"]["shift"]
    assert cal["model_config"]["head"]["calibration"] == [scale, shift]
    calibrated = Model(str(ckpt))
    results = calibrated.predict(str(root / "d/images/val"), project=str(tmp_path), **DEPTH)
    assert results[0]["unit"] == "metres"
    raw = Model(str(m.ckpt_path)).predict(str(root / "d/images/val"), project=str(tmp_path), **DEPTH)
    expected = 1 / np.clip(raw[0]["_depth"] * scale + shift, 1e-6, None)
    assert np.allclose(results[0]["_depth"], expected, rtol=1e-4)
    # exported with the calibration baked in: the file outputs metres
    path = calibrated.export(dynamic=True)
    common = {**DEPTH, "data": str(data)}
    pt, ort = calibrated.val(**common), Model(str(path)).val(**common)
    assert ort["abs_rel"] == pytest.approx(pt["abs_rel"], rel=1e-3) and ort["delta1"] == pytest.approx(
        pt["delta1"], abs=1e-3
    )


def test_calibrate_needs_depth_and_a_relative_model(trained, tmp_path):
    m, data, root = trained
    nodepth = tmp_path / "n"
    (nodepth / "images/val").mkdir(parents=True)
    cv2.imwrite(str(nodepth / "images/val/a.png"), np.zeros((8, 8, 3), np.uint8))
    write_data_yaml(
        nodepth / "data.yaml",
        {"path": ".", "train": "images/val", "val": "images/val", "names": ["x"], "depth_scale": 1000.0},
    )
    r = run_cli("depth", "calibrate", f"model={m.ckpt_path}", f"data={nodepth / 'data.yaml'}", "imgsz=64")
    # the dataset rules training applies refuse a split without depth maps, naming where they looked
    assert r.returncode == 1 and "none of its images has a label, mask or depth file" in r.stderr, r.stderr[-1500:]
    metric = tmp_path / "metric.pt"
    ckpt = torch.load(m.ckpt_path, weights_only=True)
    ckpt["model_config"]["head"]["output"] = "log_depth"
    torch.save(ckpt, metric)
    r = run_cli("depth", "calibrate", f"model={metric}", f"data={data}", "imgsz=64")
    assert r.returncode == 2 and "already predicts metres" in r.stderr, r.stderr[-1500:]


def test_metric_mode_predicts_metres_and_val_is_not_aligned(tmp_path):
    data = depth_dataset(tmp_path / "d")
    m = Model("depth-n", task="depth")
    m.train(data=str(data), epochs=1, depth_mode="metric", project=str(tmp_path / "runs"), **DEPTH)
    assert m.ckpt["model_config"]["head"]["output"] == "log_depth"
    r = run_cli("depth", "val", f"model={m.ckpt_path}", f"data={data}", "imgsz=64")
    assert r.returncode == 0 and "not aligned (metric depth)" in r.stdout, r.stderr[-1500:]
    res = m.predict(str(tmp_path / "d/images/val"), project=str(tmp_path), **DEPTH)
    assert res[0]["unit"] == "metres" and res[0]["min"] > 0


def test_predict_saves_npy_png_ply_and_overlay(trained, tmp_path):
    m, data, root = trained
    results = m.predict(
        str(root / "d/images/val"), save=True, save_depth=True, save_ply=True, project=str(tmp_path), **DEPTH
    )
    for r in results:
        stem = Path(r["image"]).stem
        raw = np.load(m.save_dir / "depth" / f"{stem}.npy")
        assert raw.shape == (r["height"], r["width"]) and np.array_equal(raw, r["_depth"])
        png = cv2.imread(str(m.save_dir / "depth" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == raw.shape
        ply = (m.save_dir / "depth" / f"{stem}.ply").read_text().splitlines()
        count = int(next(line.split()[-1] for line in ply if line.startswith("element vertex")))
        assert count == raw.size and len(ply) == count + ply.index("end_header") + 1
        overlay = cv2.imread(str(m.save_dir / f"{stem}.jpg"))
        assert overlay.shape[0] == r["height"] and overlay.shape[1] > 2 * r["width"]  # image | depth | legend
    written = json.loads((m.save_dir / "predictions.json").read_text())
    assert "_depth" not in written[0] and written[0]["unit"] == "relative inverse depth"


def test_wrong_task_and_export_options_are_clear_errors(trained):
    m, data, root = trained
    r = run_cli("segment", "val", f"model={m.ckpt_path}", f"data={data}")
    assert r.returncode == 1 and "trained for task 'depth', not 'segment'" in r.stderr, r.stderr
    r = run_cli("export", f"model={m.ckpt_path}", "argmax=True")
    assert r.returncode == 2 and "'argmax'. It is a setting of the segment task" in r.stderr, r.stderr
    r = run_cli("depth", "train", "depth_mode=absolute")
    assert r.returncode == 2 and "depth_mode='absolute': choose one of relative, metric" in r.stderr, r.stderr


def test_normalise_matches_a_per_image_median_and_mean_absolute_deviation():
    from visionkit.tasks.depth.loss import normalise

    torch.manual_seed(0)
    target = torch.rand(4, 9, 7) * 5
    valid = torch.rand(4, 9, 7) > 0.3
    valid[2] = False  # an image without a valid pixel stays 0
    valid[3] = False
    valid[3, 0, :4] = True  # an even count: the lower middle value, as Tensor.median
    out = normalise(target, valid)
    for i in range(4):
        v = target[i][valid[i]]
        if v.numel() == 0:
            assert torch.equal(out[i], torch.zeros_like(out[i]))
            continue
        med = v.median()
        want = (v - med) / (v - med).abs().mean().clamp(min=1e-6)
        assert torch.allclose(out[i][valid[i]], want, atol=1e-5)
        assert torch.equal(out[i][~valid[i]], torch.zeros_like(out[i][~valid[i]]))

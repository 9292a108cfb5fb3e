"""ONNX export checked against PyTorch with onnxruntime, and onnxruntime as a second inference backend."""

import json

import numpy as np
import onnx
import pytest

from tests.conftest import TINY, run_cli
from visionkit import Model
from visionkit.engine.exporter import ExportError
from visionkit.errors import CheckpointError, UsageError


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory):
    m = Model("yolo-n")
    m.train(**{**TINY, "imgsz": 64, "close_mosaic": 0}, data=str(shapes_root / "data.yaml"),
            project=str(tmp_path_factory.mktemp("det")), epochs=1)
    return m


@pytest.fixture(scope="module")
def classifier(shapes_root, tmp_path_factory):
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(shapes_root / "data.yaml"), project=str(tmp_path_factory.mktemp("cls")), epochs=1)
    return m


def test_classifier_export_and_onnxruntime_backend(classifier, shapes_root, tmp_path):
    path = classifier.export(format="onnx", verbose=False)  # static batch 1: the backend feeds it in chunks
    assert path == classifier.ckpt_path.with_suffix(".onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] == "classify" and json.loads(meta["names"]) == classifier.ckpt["names"]
    assert meta["imgsz"] == "32" and json.loads(meta["mean"]) == classifier.ckpt["mean"]
    assert json.loads(meta["model_config"])["backbone"]["name"] == "mnist_net"
    ort_model = Model(str(path))
    assert ort_model.task_name == "classify"
    a = classifier.val(project=str(tmp_path), verbose=False, plots=False)
    b = ort_model.val(data=str(shapes_root / "data.yaml"), project=str(tmp_path), verbose=False, plots=False)
    assert a["top1"] == b["top1"] and a["top5"] == b["top5"]
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:4]]
    pa = classifier.predict(images, project=str(tmp_path), verbose=False)
    pb = ort_model.predict(images, project=str(tmp_path), verbose=False)
    for x, y in zip(pa, pb):
        assert [t["class"] for t in x["top"]] == [t["class"] for t in y["top"]]
        assert np.allclose([t["score"] for t in x["top"]], [t["score"] for t in y["top"]], atol=1e-4)


def test_detector_export_matches_pytorch_on_both_backends(detector, shapes_root, tmp_path):
    path = detector.export(dynamic=True, verbose=False)
    ort_model = Model(str(path))
    data = str(shapes_root / "data.yaml")
    a = detector.val(data=data, project=str(tmp_path), verbose=False, plots=False)
    b = ort_model.val(data=data, project=str(tmp_path), verbose=False, plots=False)
    assert abs(a["mAP50-95"] - b["mAP50-95"]) <= 0.001 and abs(a["mAP50"] - b["mAP50"]) <= 0.001
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:4]]
    kw = {"project": str(tmp_path), "verbose": False, "conf": 0.05}
    for x, y in zip(detector.predict(images, **kw), ort_model.predict(images, **kw)):
        dx, dy = x["detections"], y["detections"]
        assert [d["class"] for d in dx] == [d["class"] for d in dy]
        assert np.allclose([d["box"] for d in dx], [d["box"] for d in dy], atol=0.05) if dx else not dy


def test_bad_export_input(detector, tmp_path):
    with pytest.raises(UsageError, match="nms=True .* is not available yet"):
        detector.export(nms=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        Model(str(tmp_path / "missing.pt"))
    with pytest.raises(UsageError, match="unsupported export format 'onx'. Did you mean 'onnx'"):
        detector.export(format="onx")
    with pytest.warns(UserWarning, match="not a multiple of the model stride 32; exporting at 96"):
        path = detector.export(imgsz=70, verbose=False)
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["imgsz"] == "96"
    with pytest.raises(ExportError, match="export_tol"):
        detector.export(export_tol=-1.0, verbose=False)
    assert detector.ckpt_path.with_suffix(".failed.onnx").is_file()
    r = run_cli("export", f"model={detector.ckpt_path}", "format=onx")
    assert r.returncode == 2 and "Did you mean 'onnx'" in r.stderr


def test_onnx_without_metadata(classifier, shapes_root, tmp_path):
    path = classifier.export(verbose=False)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(UsageError, match="no visionkit metadata.*task=, names=, imgsz="):
        Model(str(bare))
    names = classifier.ckpt["names"]
    m = Model(str(bare), task="classify", names=names, imgsz=32)
    m.ckpt["mean"], m.ckpt["std"] = classifier.ckpt["mean"], classifier.ckpt["std"]
    img = str(next((shapes_root / "images/val").glob("*.jpg")))
    got = m.predict(img, project=str(tmp_path), verbose=False)[0]
    ref = classifier.predict(img, project=str(tmp_path), verbose=False)[0]
    assert got["top"][0]["class"] == ref["top"][0]["class"]

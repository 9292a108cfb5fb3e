"""OpenVINO IR export (format=openvino): converted from the checked ONNX file, checked with OpenVINO's CPU runtime
against PyTorch, and run by visionkit as a backend with the same results as the ONNX file."""

import numpy as np
import pytest
import torch

from tests.conftest import TINY, run_cli
from visionkit import Model
from visionkit.errors import CheckpointError, ExportError, UsageError

ov = pytest.importorskip("openvino", reason="format=openvino needs pip install 'visionkit[openvino]'")


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory):
    m = Model("yolo-n")
    m.train(**{**TINY, "imgsz": 64, "close_mosaic": 0}, data=str(shapes_root / "data.yaml"),
            project=str(tmp_path_factory.mktemp("det")), epochs=1)  # fmt: skip
    return m


def test_openvino_file_matches_pytorch_and_onnx(detector, shapes_root, tmp_path):
    path = detector.export(format="openvino", verbose=False)
    assert path == detector.ckpt_path.with_suffix(".xml") and path.with_suffix(".bin").is_file()
    model = ov.Core().read_model(str(path))
    assert model.get_rt_info(["visionkit", "task"]).astype(str) == "detect"  # the metadata travels with the file
    backend = Model(str(path))
    assert backend.task_name == "detect" and backend.names == detector.ckpt["names"]
    # the backend's raw outputs are PyTorch's export wrapper's (fp32, not OpenVINO's bf16 default on AMX CPUs)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = detector.task.export_wrapper(detector.net.eval(), detector._args({}))(x)
    got = backend.net(x)  # a batch of 2 through a batch-1 file: fed in chunks
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g.numpy() - w.numpy()).max() / max(1.0, w.abs().max().item()) < 1e-4
    onnx_metrics = Model(str(detector.export(format="onnx", verbose=False))).val(verbose=False, plots=False,
                                                                              project=str(tmp_path))  # fmt: skip
    ov_metrics = backend.val(verbose=False, plots=False, project=str(tmp_path))
    # two runtimes, one graph: near-tied scores of a one-epoch model may swap places, nothing more
    assert ov_metrics["mAP50-95"] == pytest.approx(onnx_metrics["mAP50-95"], abs=0.005)
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:3]]
    kw = {"conf": 0.001, "max_det": 20, "verbose": False, "save": False}  # a one-epoch model: low scores
    got = backend.predict(images, **kw)
    want = Model(str(detector.ckpt_path.with_suffix(".onnx"))).predict(images, **kw)
    for g, w in zip(got, want, strict=True):
        assert len(g["detections"]) == len(w["detections"]) > 0
        boxes = [np.array([d["box"] for d in r["detections"]]) for r in (g, w)]
        assert np.abs(boxes[0] - boxes[1]).max() < 0.01


def test_openvino_backend_follows_the_threads_it_is_run_with(detector):
    from visionkit.engine.threads import use_threads

    backend = Model(str(detector.export(format="openvino", verbose=False))).net
    for n in (1, 2):
        with use_threads(n):
            backend(torch.rand(1, 3, 64, 64))
        assert int(backend.compiled.get_property("INFERENCE_NUM_THREADS")) == n


def test_openvino_with_nms_in_the_graph(detector, shapes_root):
    path = detector.export(format="openvino", nms=True, conf=0.01, verbose=False)
    results = Model(str(path)).predict(str(shapes_root / "images/val"), conf=0.01, verbose=False, save=False)
    assert results and all("detections" in r for r in results)


def test_openvino_refusals_and_bad_files(detector, tmp_path):
    with pytest.raises(UsageError, match="half= is not supported"):
        detector.export(format="openvino", half=True, verbose=False)
    with pytest.raises(ExportError, match="export_tol"):
        detector.export(format="openvino", export_tol=1e-30, verbose=False)
    assert not list(detector.ckpt_path.parent.glob("vk-openvino-*"))  # nothing half-written left behind
    with pytest.raises(CheckpointError, match="does not exist"):
        Model(str(tmp_path / "missing.xml"))
    (tmp_path / "bad.xml").write_text("<net>")
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="OpenVINO cannot read"):
        Model(str(tmp_path / "bad.xml"))


def test_openvino_int8_is_judged_and_runs_as_a_backend(detector, shapes_root, capsys):
    """NNCF's int8 file beside the float one: its metric change and latency printed and kept in its runtime info,
    int8 operations in the graph, and results close to the float file's."""
    pytest.importorskip("nncf", reason="int8 OpenVINO files need NNCF (pip install 'visionkit[openvino]')")
    path = detector.export(format="openvino", int8=True, data=str(shapes_root / "data.yaml"), fraction=0.25)
    assert path.name == "best_int8.xml" and path.with_suffix(".bin").is_file()
    out = capsys.readouterr().out
    assert "int8 (NNCF)" in out and "latency" in out and "val mAP50-95" in out
    model = ov.Core().read_model(str(path))
    from visionkit.runtime.openvino_backend import file_metadata

    info = file_metadata(model)
    assert info["precision"] == "int8" and info["task"] == "detect" and '"int8"' in info["latency_ms"]
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())  # quantised, not a float copy
    assert not list(path.parent.glob("vk-openvino-int8-*"))
    float_map = Model(str(path.with_name("best.xml"))).val(verbose=False, plots=False)["mAP50-95"]
    int8_map = Model(str(path)).val(verbose=False, plots=False)["mAP50-95"]
    assert abs(int8_map - float_map) < 0.05


def test_cli_export_and_val_openvino(detector, tmp_path):
    r = run_cli("export", f"model={detector.ckpt_path}", "format=openvino")
    assert r.returncode == 0 and "OpenVINO" in r.stdout and "difference" in r.stdout, r.stderr[-2000:]
    r = run_cli("detect", "val", f"model={detector.ckpt_path.with_suffix('.xml')}", f"project={tmp_path}",
                "plots=false")  # fmt: skip
    assert r.returncode == 0 and "mAP50-95" in r.stdout, r.stderr[-2000:]

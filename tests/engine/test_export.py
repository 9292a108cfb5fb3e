"""ONNX export checked against PyTorch with onnxruntime, and onnxruntime as a second inference backend."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.conftest import TINY, mixed_aspect_dataset, run_cli
from visionkit import Model
from visionkit.data.format import write_data_yaml
from visionkit.data.transforms import letterbox
from visionkit.engine.cpu_features import cpu_features
from visionkit.errors import CheckpointError, ExportError, UsageError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import model_from_checkpoint
from visionkit.registry import REGISTRY
from visionkit.tasks.detect.export import DetectExport, DetectNMSExport
from visionkit.tasks.detect.task import nms

EXAMPLE = Path(__file__).parents[2] / "examples" / "onnxruntime_detect.py"


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory):
    m = Model("yolo-n")
    m.train(
        **{**TINY, "imgsz": 64, "close_mosaic": 0},
        data=str(shapes_root / "data.yaml"),
        project=str(tmp_path_factory.mktemp("det")),
        epochs=1,
    )
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


def test_onnx_backend_follows_the_threads_it_is_run_with(classifier):
    """threads= (predict, val, benchmark) sets torch's count; onnxruntime fixes its own per session, so the backend
    remakes the session when the two differ: benchmark's threads=1 is timed on one thread."""
    from visionkit.engine.threads import use_threads

    backend = Model(str(classifier.export(format="onnx", verbose=False))).net
    x = torch.rand(1, 3, 32, 32)
    for n in (1, 2, 1):
        with use_threads(n):
            out = backend(x)
        assert backend.session.get_session_options().intra_op_num_threads == n
        assert out.shape == (1, len(classifier.ckpt["names"]))


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


def test_detector_with_nms_in_graph(detector, shapes_root, tmp_path):
    """nms=True: (B, max_det, 6) + counts equal to PyTorch + torchvision NMS for batch 1 and 3 at two image
    sizes of one dynamic file, and the onnxruntime backend reads the table."""
    conf, iou, max_det = 0.001, 0.6, 20
    path = detector.export(nms=True, dynamic=True, conf=conf, iou=iou, max_det=max_det, verbose=False)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["nms"]) == {"conf": conf, "iou": iou, "max_det": max_det}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["detections", "num_detections"]
    net = model_from_checkpoint(detector.ckpt).eval()
    files = sorted((shapes_root / "images/val").glob("*.jpg"))
    found = 0
    for size in (64, 96):
        images = torch.stack(
            [
                torch.from_numpy(letterbox(cv2.imread(str(f)), size)[0][..., ::-1].copy()).permute(2, 0, 1).float()
                / 255
                for f in files[:3]
            ]
        )
        for batch in (1, 3):
            x = images[:batch]
            with torch.no_grad():
                expected = nms(*net.head.decode(net(x)), conf, iou, max_det)
            table, count = session.run(None, {"images": x.numpy()})
            assert table.shape == (batch, max_det, 6) and count.shape == (batch,)
            for i, (b, s, c) in enumerate(expected):
                k = len(s)
                assert count[i] == k
                rows = torch.cat([b, s[:, None], c[:, None].float()], 1).numpy()
                np.testing.assert_allclose(table[i, :k], rows, atol=2e-3)
                assert not table[i, k:].any()
                found += k
    assert found > 0
    ort_model = Model(str(path))
    images = [str(f) for f in files[:4]]
    kw = {"project": str(tmp_path), "verbose": False, "conf": conf, "iou": iou, "max_det": max_det}
    predicted = list(zip(detector.predict(images, **kw), ort_model.predict(images, **kw)))
    assert any(x["detections"] for x, _ in predicted)
    for x, y in predicted:
        assert [d["class"] for d in x["detections"]] == [d["class"] for d in y["detections"]]
        assert np.allclose([d["box"] for d in x["detections"]], [d["box"] for d in y["detections"]], atol=0.05)
    with pytest.warns(UserWarning, match="NMS in the graph"):
        ort_model.predict(images[:1], project=str(tmp_path), verbose=False, conf=conf / 10)
    with pytest.warns(UserWarning, match="validation"):  # mAP from the file's own (filtered) detections
        metrics = ort_model.val(data=str(shapes_root / "data.yaml"), project=str(tmp_path), verbose=False, plots=False)
    assert 0.0 <= metrics["mAP50-95"] <= 1.0


def test_standalone_example_matches_visionkit(detector, shapes_root, tmp_path):
    """examples/onnxruntime_detect.py (no visionkit import) gives visionkit's own predictions on an NMS file."""
    path = detector.export(nms=True, dynamic=True, conf=0.001, verbose=False)
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:3]]
    r = subprocess.run([sys.executable, str(EXAMPLE), str(path), *images], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    ref = detector.predict(images, project=str(tmp_path), verbose=False, conf=0.001)
    assert [g["image"] for g in got] == images
    assert sum(len(g["detections"]) for g in got) > 0
    for g, x in zip(got, ref):
        assert [d["class"] for d in g["detections"]] == [d["class"] for d in x["detections"]]
        assert np.allclose([d["box"] for d in g["detections"]], [d["box"] for d in x["detections"]], atol=0.05)


def test_simplified_export_keeps_outputs(detector):
    pytest.importorskip("onnxslim")
    plain = onnx.load(str(detector.export(nms=True, dynamic=True, verbose=False)))
    path = detector.export(nms=True, dynamic=True, simplify=True, verbose=False)  # passes the export check
    slim = onnx.load(str(path))
    assert len(slim.graph.node) < len(plain.graph.node)
    assert [o.name for o in slim.graph.output] == ["detections", "num_detections"]
    assert any(n.op_type == "NonMaxSuppression" for n in slim.graph.node)
    assert {p.key for p in slim.metadata_props} >= {"task", "names", "nms", "model_config"}


def test_bad_export_input(detector, classifier, tmp_path):
    # a key of another task names the task it belongs to
    with pytest.raises(
        UsageError, match="unknown argument 'nms'. It is a setting of the detect and instance tasks, not of this"
    ):
        classifier.export(nms=True)
    with pytest.raises(UsageError, match="'argmax'. It is a setting of the segment task"):
        detector.export(argmax=True)
    with pytest.raises(UsageError, match="'argmax'. It is a setting of the segment task"):
        classifier.export(argmax=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        Model(str(tmp_path / "missing.pt"))
    with pytest.raises(UsageError, match="unsupported export format 'onx'. Did you mean 'onnx'"):
        detector.export(format="onx")
    with pytest.warns(UserWarning, match="not a multiple of the model stride 32; exporting at 96"):
        path = detector.export(imgsz=70, verbose=False)
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["imgsz"] == "96"
    with pytest.raises(ExportError, match="failed at opset 7"):
        detector.export(opset=7, verbose=False)
    assert not list(detector.ckpt_path.parent.glob("*.tmp"))  # nothing half-written left behind
    with pytest.raises(UsageError, match=r"export_tol=-1.0: expected a number in \(0, inf\)"):
        detector.export(export_tol=-1.0, verbose=False)
    with pytest.raises(ExportError, match="export_tol"):  # a tolerance no float computation meets
        detector.export(export_tol=1e-30, verbose=False)
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


@pytest.mark.parametrize("nms", [False, True])
def test_fp16_detector_graph_is_valid_onnx(nms, tmp_path):
    """half=True exports need CUDA, so trace the fp16 wrapper directly: every op must exist for float16 in ONNX
    (torch.arange in fp16 once became an invalid Range node), and NMS must run in fp32."""
    cfg = {**REGISTRY.build("model", "yolo-n"), "num_classes": 3}
    net = build_model(cfg).eval()
    wrapper = (DetectNMSExport(net, 0.001, 0.7, 10) if nms else DetectExport(net)).half().eval()
    path = tmp_path / "fp16.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.rand(1, 3, 64, 64).half(),),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=list(wrapper.output_names),
            dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}},
            opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {"images": np.random.rand(2, 3, 96, 64).astype(np.float16)})
    expected = [(2, 10, 6), (2,)] if nms else [(2, 126, 4), (2, 126, 3)]
    assert [o.shape for o in outs] == expected
    assert outs[0].dtype == (np.float32 if nms else np.float16)


def test_rect_validation_on_both_backends(detector, tmp_path):
    """Non-square images: PyTorch and a dynamic ONNX file validate in rectangular batches alike; a static
    file falls back to square batches by itself."""
    root = tmp_path / "mixed"
    mixed_aspect_dataset(root)
    write_data_yaml(
        root / "data.yaml",
        {"path": ".", "train": "images/val", "val": "images/val", "names": dict(enumerate(detector.ckpt["names"]))},
    )
    kw = {"data": str(root / "data.yaml"), "project": str(tmp_path), "verbose": False, "plots": False, "batch": 2}
    rect = detector.val(**kw)
    dynamic = Model(str(detector.export(dynamic=True, verbose=False))).val(**kw)
    assert abs(rect["mAP50-95"] - dynamic["mAP50-95"]) <= 0.001
    static = Model(str(detector.export(verbose=False))).val(**kw)
    square = detector.val(**kw, rect=False)
    assert abs(static["mAP50-95"] - square["mAP50-95"]) <= 0.001
    # prediction in snug shapes: PyTorch, the dynamic NMS file and the standalone example agree
    images = [str(p) for p in sorted((root / "images/val").glob("*.png"))[:3]]
    nms_path = detector.export(nms=True, dynamic=True, conf=0.001, verbose=False)
    kw = {"project": str(tmp_path), "verbose": False, "conf": 0.001, "batch": 1}  # one snug shape per image
    ref, got = detector.predict(images, **kw), Model(str(nms_path)).predict(images, **kw)
    out = subprocess.run([sys.executable, str(EXAMPLE), str(nms_path), *images], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    standalone = [json.loads(line) for line in out.stdout.splitlines()]
    assert sum(len(r["detections"]) for r in ref) > 0
    for x, y, z in zip(ref, got, standalone):
        for other in (y, z):
            assert [d["class"] for d in x["detections"]] == [d["class"] for d in other["detections"]]
            assert np.allclose([d["box"] for d in x["detections"]], [d["box"] for d in other["detections"]], atol=0.05)


def test_int8_onnx_is_quantised_calibrated_judged_and_runs(classifier, shapes_root, capsys):
    """int8=True writes <name>_int8.onnx beside the checked float file: a QDQ graph with int8 weights, calibrated on
    the train split (fraction= of it), its metric change and latency printed and in its metadata, and the
    onnxruntime backend runs it with outputs near the float file's."""
    path = classifier.export(format="onnx", int8=True, fraction=0.5, verbose=True)
    assert (
        path == classifier.ckpt_path.with_name("best_int8.onnx") and classifier.ckpt_path.with_suffix(".onnx").is_file()
    )
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights, "no convolution weight was stored as int8"
    meta = {p.key: p.value for p in model.metadata_props}
    train_images = len(list((shapes_root / "images/train").glob("*.jpg")))
    assert meta["precision"] == "int8" and meta["calibration_images"] == str(-(-train_images // 2))
    assert meta["task"] == "classify" and json.loads(meta["names"]) == classifier.ckpt["names"]
    latency = json.loads(meta["latency_ms"])
    assert latency["float"] > 0 and latency["int8"] > 0
    assert meta["latency_cpu"] == cpu_features().describe()  # the int8 gain depends on the CPU: say which
    assert meta["int8_metric_change"].startswith("val top1 ")
    out = capsys.readouterr().out
    assert f"int8 calibrated on {meta['calibration_images']} image(s)" in out and "val top1" in out
    assert path.stat().st_size < classifier.ckpt_path.with_suffix(".onnx").stat().st_size
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))]
    got = Model(str(path)).predict(images, verbose=False, save=False)
    want = Model(str(classifier.ckpt_path.with_suffix(".onnx"))).predict(images, verbose=False, save=False)
    for g, w in zip(got, want, strict=True):
        g_scores = {t["name"]: t["score"] for t in g["top"]}
        for t in w["top"]:
            assert g_scores[t["name"]] == pytest.approx(t["score"], abs=0.1), (g, w)


def test_int8_onnx_refusals(classifier, tmp_path):
    with pytest.raises(UsageError, match="half=True and int8=True"):
        classifier.export(format="onnx", int8=True, half=True, verbose=False)
    with pytest.raises(UsageError, match=r"fraction"):
        classifier.export(format="onnx", int8=True, fraction=1.5, verbose=False)
    # a checkpoint that names no data, and no source=: nothing to calibrate on
    ckpt = {k: v for k, v in classifier.ckpt.items() if k not in ("train_args", "data")}
    from visionkit.models.checkpoint import save_checkpoint

    bare = Model(str(save_checkpoint(ckpt, tmp_path / "bare.pt")))
    with pytest.raises(UsageError, match="int8=True calibrates on real images: pass data="):
        bare.export(format="onnx", int8=True, verbose=False)
    assert not list(tmp_path.glob("*_int8.onnx")) and not list(tmp_path.glob("vk-int8-*"))


def test_int8_keeps_the_last_weighted_layers_and_their_decoding_float():
    """float_tail: the convs with no weighted layer after them, and what follows them, stay float; the body and a
    layer feeding another weighted layer are quantised."""
    from onnx import TensorProto, helper

    from visionkit.export.onnx_int8 import float_tail

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="body"),
        helper.make_node("Relu", ["a"], ["b"], name="act"),
        helper.make_node("Conv", ["b", "w"], ["box"], name="box_out"),
        helper.make_node("Conv", ["b", "w"], ["cls"], name="cls_out"),
        helper.make_node("Softplus", ["box"], ["dist"], name="decode_box"),
        helper.make_node("Sigmoid", ["cls"], ["score"], name="decode_cls"),
        helper.make_node("Concat", ["dist", "score"], ["y"], name="table", axis=1),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "g", [io[0]], [io[1]], initializer=[w])
    assert sorted(float_tail(helper.make_model(graph))) == ["box_out", "cls_out", "decode_box", "decode_cls", "table"]


def test_int8_keeps_the_stem_that_reads_the_image_float():
    """float_stem: the weighted layers that read the image (through unweighted ops only) and those ops stay float;
    the layers after the stem, and a constant branch that never reads the image, are left to the quantiser."""
    from onnx import TensorProto, helper

    from visionkit.export.onnx_int8 import float_ends, float_stem

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="layout", perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["xt", "w"], ["a"], name="stem"),
        helper.make_node("Relu", ["a"], ["b"], name="stem_act"),
        helper.make_node("Conv", ["b", "w"], ["c"], name="body"),
        helper.make_node(
            "Constant", [], ["k"], name="const", value=helper.make_tensor("v", TensorProto.FLOAT, [], [2.0])
        ),
        helper.make_node("Mul", ["c", "k"], ["d"], name="scale"),
        helper.make_node("Conv", ["d", "w"], ["y"], name="out"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", [io[0]], [io[1]], initializer=[w]))
    assert sorted(float_stem(model)) == ["layout", "stem"]
    assert sorted(float_ends(model)) == ["layout", "out", "stem"]

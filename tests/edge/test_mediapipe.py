"""MediaPipe deployment: .tflite files for every task that MediaPipe Tasks load, checked against PyTorch at export
and usable as a predict/val backend with the same metrics as the .pt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, run_cli, spread_head
from visionkit import Model
from visionkit.errors import CheckpointError, UsageError

EXAMPLE = Path(__file__).parents[2] / "examples" / "mediapipe_detect.py"


def train(task: str, model: str, data: str, tmp_path_factory, **extra) -> Model:
    m = Model(model, task=task)
    m.train(**{**TINY, "epochs": 1, "data": data, "project": str(tmp_path_factory.mktemp(task)), **extra})
    return m


@pytest.fixture(scope="module")
def classifier(shapes_root, tmp_path_factory):
    return train("classify", "mnist-tiny", str(shapes_root / "data.yaml"), tmp_path_factory)


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory):
    m = train("detect", "yolo-n", str(shapes_root / "data.yaml"), tmp_path_factory, imgsz=64, close_mosaic=0)
    spread_head(m)
    return Model(str(m.ckpt_path))


def val(m: Model, tmp_path, **kw) -> dict:
    return m.val(project=str(tmp_path), verbose=False, plots=False, workers=0, **kw)


def test_metadata_parser_version_replacement():
    """The replacement for mediapipe's missing native helper gives the schema's "Added in" versions."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    from visionkit.export.tflite_metadata import minimum_parser_version

    def version(**subgraph) -> str:
        import flatbuffers

        md, sg = fb.ModelMetadataT(), fb.SubGraphMetadataT()
        for k, v in subgraph.items():
            setattr(sg, k, v)
        md.subgraphMetadata = [sg]
        b = flatbuffers.Builder(0)
        b.Finish(md.Pack(b), b"M001")
        return minimum_parser_version(bytes(b.Output()))

    assert version() == "1.0.0"
    assert version(outputTensorGroups=[fb.TensorGroupT()]) == "1.2.0"
    assert version(customMetadata=[fb.CustomMetadataT()]) == "1.5.0"
    assert version(inputProcessUnits=[fb.ProcessUnitT()]) == "1.1.0"


def test_in_graph_nms_matches_torchvision():
    from torchvision.ops import batched_nms

    from visionkit.export.graphs import suppress

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = 60
        xy = torch.rand(n, 2, generator=g) * 0.7
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        boxes = torch.cat([xy, xy + wh], 1)  # ymin xmin ymax xmax: IoU is symmetric in the axes
        label = torch.randint(0, 3, (n,), generator=g).float()
        score, order = torch.rand(n, generator=g).sort(descending=True)
        boxes, label = boxes[order], label[order]
        keep = suppress(boxes, label, score, 0.2, 0.45)
        above = score > 0.2
        ref = batched_nms(boxes[above], score[above], label[above].long(), 0.45)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.nonzero(above)[ref, 0]] = True
        assert torch.equal(keep, expected)


def test_classifier_file_loads_in_mediapipe_and_matches_the_pt(classifier, shapes_root, tmp_path):
    path = classifier.export(format="tflite", verbose=False)
    assert path == classifier.ckpt_path.with_suffix(".tflite")
    from visionkit.export.tflite_metadata import output_descriptions, read_record

    record = read_record(path)
    assert record["task"] == "classify" and record["names"] == classifier.ckpt["names"]
    assert record["kind"] == "classifier" and record["imgsz"] == [32, 32]
    assert output_descriptions(path.read_bytes()) == ["score"]
    tfl = Model(str(path))
    a, b = val(classifier, tmp_path), val(tfl, tmp_path)  # data found from the file's record
    assert a["top1"] == b["top1"] and a["top5"] == b["top5"]
    images = [str(p) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:3]]
    pa = classifier.predict(images, verbose=False, save=False, project=str(tmp_path))
    pb = tfl.predict(images, verbose=False, save=False, project=str(tmp_path))
    for x, y in zip(pa, pb):
        assert x["top"][0]["class"] == y["top"][0]["class"]
        assert abs(x["top"][0]["score"] - y["top"][0]["score"]) < 1e-3


def test_segmenter_and_depth_files(shapes_root, tmp_path_factory, tmp_path):
    seg = train("segment", "unet-n", str(shapes_root / "data.yaml"), tmp_path_factory)
    path = seg.export(format="mediapipe", verbose=False)
    a, b = val(seg, tmp_path), val(Model(str(path)), tmp_path)
    assert abs(a["mIoU"] - b["mIoU"]) < 2e-3 and abs(a["pixel_acc"] - b["pixel_acc"]) < 2e-3

    depth = train("depth", "depth-n", "rooms", tmp_path_factory, datasets_dir=str(tmp_path_factory.mktemp("ds")))
    path = depth.export(format="mediapipe", verbose=False)
    from visionkit.export.tflite_metadata import read_record

    assert read_record(path)["kind"] == "value_map"
    tfl = Model(str(path))
    a, b = val(depth, tmp_path), val(tfl, tmp_path)
    for key in ("abs_rel", "delta1", "rmse"):
        assert abs(a[key] - b[key]) <= 1e-3 * max(1.0, abs(a[key])), key
    image = sorted((Path(depth.ckpt["train_args"]["datasets_dir"]) / "rooms").rglob("*.jpg"))[0]
    ra = depth.predict(str(image), verbose=False, save=False, project=str(tmp_path))[0]
    rb = tfl.predict(str(image), verbose=False, save=False, project=str(tmp_path))[0]
    assert ra["unit"] == rb["unit"]
    assert np.abs(ra["_depth"] - rb["_depth"]).max() <= 1e-3 * np.abs(ra["_depth"]).max()


@pytest.mark.parametrize("nms", [False, True], ids=["mediapipe-nms", "graph-nms"])
def test_detector_both_layouts(detector, nms, tmp_path):
    from visionkit.export.tflite_metadata import output_descriptions, read_record

    path = detector.export(format="mediapipe", nms=nms, conf=0.001, iou=0.7, verbose=False)
    record = read_record(path)
    assert record["kind"] == ("detector_nms" if nms else "detector")
    descriptions = output_descriptions(path.read_bytes())
    from ai_edge_litert import interpreter as tfl

    shapes = [list(o["shape"]) for o in tfl.Interpreter(model_path=str(path)).get_output_details()]
    if nms:  # each description sits on the tensor it describes, whatever the internal tensor indices
        assert descriptions == ["location", "category", "score", "number of detections"]
        assert shapes[0][-1] == 4 and len(shapes[1]) == 2 and len(shapes[2]) == 2 and shapes[3] == [1]
    else:
        assert descriptions == ["location", "score"] and shapes[0][-1] == 4 and shapes[1][-1] == len(detector.names)
    a, b = val(detector, tmp_path), val(Model(str(path)), tmp_path)
    if nms:  # same thresholds as validation (conf 0.001, IoU 0.7); MediaPipe reports whole-pixel boxes
        assert abs(a["mAP50"] - b["mAP50"]) < 0.02 and abs(a["mAP50-95"] - b["mAP50-95"]) < 0.02


def test_end_to_end_detector_exports_final_boxes_without_nms(shapes_root, tmp_path_factory, tmp_path):
    """An NMS-free head (one-to-one branch, DFL-free) in the post-processing layout: the graph keeps the best
    boxes above conf and suppresses nothing (the writer's check compares MediaPipe's detections with PyTorch's
    graph), and MediaPipe's file validates as the checkpoint does."""
    m = train("detect", "yolo-n-e2e", str(shapes_root / "data.yaml"), tmp_path_factory, imgsz=64, close_mosaic=0)
    spread_head(m)
    detector = Model(str(m.ckpt_path))
    assert detector.net.head.end2end
    path = detector.export(format="mediapipe", nms=True, conf=0.001, verbose=False)
    from visionkit.export.tflite_metadata import read_record

    record = read_record(path)
    assert record["kind"] == "detector_nms"
    metadata = record["metadata"]
    assert metadata["end2end"] == "true" and json.loads(metadata["nms"])["iou"] is None
    a, b = val(detector, tmp_path), val(Model(str(path)), tmp_path)
    assert abs(a["mAP50"] - b["mAP50"]) < 0.02 and abs(a["mAP50-95"] - b["mAP50-95"]) < 0.02


def test_fp16_and_int8_report_size_and_metric(classifier, shapes_root, capsys):
    float_size = classifier.export(format="mediapipe", verbose=False).stat().st_size
    half = classifier.export(format="mediapipe", half=True)
    out = capsys.readouterr().out
    assert "float16 weights" in out and "val top1" in out
    assert half.stat().st_size < float_size  # weights halve; graph and metadata stay (most of a tiny model)
    small = classifier.export(format="mediapipe", int8=True, data=str(shapes_root / "data.yaml"))
    out = capsys.readouterr().out
    assert "int8" in out and "val top1" in out
    assert small.stat().st_size < float_size
    assert Model(str(small)).predict(
        str(sorted((shapes_root / "images/val").glob("*.jpg"))[0]), verbose=False, save=False
    )[0]["top"]


def test_bad_input(classifier, detector, tmp_path):
    with pytest.raises(UsageError, match="'nms'. It is a setting of the detect and instance tasks"):
        classifier.export(format="mediapipe", nms=True)
    with pytest.raises(UsageError, match="int8=True calibrates"):
        Model(str(classifier.ckpt_path)).export(format="mediapipe", int8=True, data=str(tmp_path / "none.yaml"))
    with pytest.raises(UsageError, match="imgsz"):
        classifier.export(format="mediapipe", imgsz="0,5")
    with pytest.raises(UsageError, match="applies to `export format=mediapipe`"):
        classifier.predict("x.jpg", imgsz=[32, 48])
    bare = tmp_path / "bare.tflite"
    from visionkit.export.tflite_convert import to_tflite

    bare.write_bytes(to_tflite(torch.nn.Conv2d(3, 3, 1).eval(), torch.rand(1, 3, 8, 8)))
    with pytest.raises(CheckpointError, match="no TFLite model metadata"):
        Model(str(bare))
    # a MediaPipe model not written by visionkit: usable once task= and names= say what it is
    foreign = tmp_path / "foreign.tflite"
    from visionkit.export import tflite_metadata as metadata

    raw = to_tflite(_tiny_classifier(), torch.rand(1, 16, 16, 3))
    foreign.write_bytes(metadata.write_classifier(raw, ["a", "b"]))
    with pytest.raises(UsageError, match="task=, names="):
        Model(str(foreign))
    m = Model(str(foreign), task="classify", names=["a", "b"])
    assert m.net.kind.name == "classifier" and m.net.size == (16, 16)
    with pytest.raises(CheckpointError, match="not a readable .tflite"):
        (tmp_path / "junk.tflite").write_bytes(b"not a model")
        Model(str(tmp_path / "junk.tflite"))


def _tiny_classifier():
    class Tiny(torch.nn.Module):
        def forward(self, x):  # (1, H, W, 3) → (1, 2)
            m = x.mean((1, 2))
            return torch.stack([m[:, 0], m[:, 1]], -1).softmax(-1)

    return Tiny().eval()


def test_cli_export_and_predict_with_tflite(classifier, shapes_root, tmp_path):
    best = classifier.ckpt_path
    r = run_cli("export", f"model={best}", "format=mediapipe", "imgsz=32,48")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MediaPipe classifier, input 32x48" in r.stdout
    r = run_cli(
        "classify",
        "predict",
        f"model={best.with_suffix('.tflite')}",
        f"source={shapes_root / 'images/val'}",
        f"project={tmp_path}",
        "verbose=false",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    preds = json.loads((tmp_path / "classify/predict/predictions.json").read_text())
    assert len(preds) == len(list((shapes_root / "images/val").glob("*.jpg")))


def test_standalone_example_matches_visionkit(detector, shapes_root, tmp_path):
    import cv2

    path = detector.export(format="mediapipe", nms=True, conf=0.3, iou=0.5, verbose=False)
    # an image at the input size: visionkit's letterbox and MediaPipe's stretch are then both the identity
    image = tmp_path / "scene.png"
    cv2.imwrite(
        str(image), cv2.resize(cv2.imread(str(sorted((shapes_root / "images/val").glob("*.jpg"))[0])), (64, 64))
    )
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), str(path), str(image)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    ours = Model(str(path)).predict(str(image), verbose=False, save=False, project=str(tmp_path))[0]["detections"]
    assert len(rows) == len(ours) > 0
    for row, det in zip(sorted(rows, key=lambda r: -r["score"]), ours):
        assert row["name"] == det["name"] and abs(row["score"] - det["score"]) < 1e-4
        assert np.abs(np.asarray(row["box"], float) - det["box"]).max() <= 1.0


def test_a_file_that_disagrees_with_pytorch_fails_the_export(classifier, monkeypatch):
    import visionkit.export.mediapipe as edge_export
    from visionkit.errors import ExportError

    out = classifier.ckpt_path.with_suffix(".tflite")
    out.unlink(missing_ok=True)
    monkeypatch.setattr(edge_export, "verify", lambda *a, **k: ["image 0: class scores differ by 0.5 (> 1e-3)"])
    with pytest.raises(ExportError, match="class scores differ"):
        classifier.export(format="mediapipe", verbose=False)
    assert not out.exists() and classifier.ckpt_path.with_suffix(".failed.tflite").is_file()


def test_video_sources_run_in_mediapipe_video_mode(detector, shapes_root, tmp_path, monkeypatch):
    import cv2

    from visionkit.runtime.mediapipe_backend import TaskRunner

    video = tmp_path / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (96, 64)) for p in sorted((shapes_root / "images/val").glob("*.jpg"))[:4]]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for frame in frames:
        writer.write(frame)
    writer.release()
    calls: list[tuple[bool, int | None]] = []
    original = TaskRunner.run

    def spy(self, rgb, timestamp_ms=None):
        calls.append((self.video, timestamp_ms))
        return original(self, rgb, timestamp_ms)

    monkeypatch.setattr(TaskRunner, "run", spy)
    tflite = Model(str(detector.export(format="mediapipe", nms=True, conf=0.25, iou=0.7, verbose=False)))
    calls.clear()  # the export's own check ran the file on images
    kw = {"conf": 0.25, "iou": 0.7, "verbose": False, "save": False, "batch": 3}
    on_video = tflite.predict(str(video), **kw)
    assert calls == [(True, 0), (True, 100), (True, 200), (True, 300)]  # one VIDEO-mode Task, times from 10 fps
    calls.clear()  # the same decoded frames as image files run in IMAGE mode, and give the same results
    cap, stills = cv2.VideoCapture(str(video)), []
    while (frame := cap.read())[0]:
        stills.append(tmp_path / f"frame{len(stills)}.png")
        cv2.imwrite(str(stills[-1]), frame[1])
    cap.release()
    on_images = tflite.predict([str(p) for p in stills], **kw)
    assert calls == [(False, None)] * 4
    assert [r["detections"] for r in on_video] == [r["detections"] for r in on_images]
    assert sum(len(r["detections"]) for r in on_video) > 0


def test_a_tflite_model_serves_label_studio_choices(classifier, shapes_root, tmp_path):
    import cv2

    pytest.importorskip("starlette", reason="the Label Studio ML backend needs the serve extra")
    from starlette.testclient import TestClient

    from tests.conftest import TASKS
    from visionkit.data.labelstudio.prelabel import default_config
    from visionkit.serve.app import create_app
    from visionkit.serve.prelabeler import PreLabeler

    path = classifier.export(format="mediapipe", verbose=False)
    image = sorted((shapes_root / "images/val").glob("*.jpg"))[0]
    labeler = PreLabeler(path, images=str(image.parent))
    assert labeler.model_version.startswith("best.tflite@")
    client = TestClient(create_app(labeler))
    body = {
        "tasks": [{"id": 1, "data": {"image": image.name}}],
        "label_config": default_config(TASKS["classify"], classifier.names),
    }
    got = client.post("/predict", json=body).json()["results"][0]
    top = Model(str(path)).infer([cv2.imread(str(image))])[0]["top"][0]
    assert got["result"][0]["value"] == {"choices": [top["name"]]}
    assert got["score"] == pytest.approx(top["score"], abs=1e-4)


def test_a_tflite_detector_tracks_a_video(detector, tmp_path):
    """`detect track` with the MediaPipe .tflite as the detector: every frame's boxes are the ones predict gives on
    that frame with the same file, the confident ones get ids, and the MOTChallenge rows hold them."""
    import cv2
    import yaml

    from visionkit.data.clips import make_clip

    clip = make_clip(seed=3, frames=10, size=64, objects=2)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for frame in clip["frames"]:
        writer.write(frame)
    writer.release()
    settings = tmp_path / "tracker.yaml"
    thresholds = {"track_high_thresh": 0.3, "track_low_thresh": 0.25, "new_track_thresh": 0.3}
    settings.write_text(yaml.safe_dump({"tracker_type": "bytetrack", **thresholds}))
    tflite = Model(str(detector.export(format="mediapipe", nms=True, conf=0.25, iou=0.7, verbose=False)))
    tracked = tflite.track(
        str(video), tracker=str(settings), iou=0.7, imgsz=64, verbose=False, save_txt=True, project=str(tmp_path)
    )
    predicted = tflite.predict(str(video), conf=0.25, iou=0.7, imgsz=64, verbose=False, save=False)
    assert [r["frame"] for r in tracked] == list(range(1, 11))
    assert [[d["box"] for d in r["detections"]] for r in tracked] == [
        [d["box"] for d in r["detections"]] for r in predicted
    ]
    ids = [(r["frame"], d["id"]) for r in tracked for d in r["detections"] if d["id"] is not None]
    assert ids, "the .tflite detector's boxes got no track ids"
    rows = (tracked.save_dir / "tracks" / "clip.txt").read_text().splitlines()
    assert sorted((int(r.split(",")[0]), int(r.split(",")[1])) for r in rows) == sorted(ids)


# a runner only the cyclic garbage collector can free: its Task's close() used to wait forever on an executor thread
# that the same collection had ended (the MediaPipe suite hung inside an unrelated allocation)
GC_SCRIPT = """
import gc, sys, weakref
import numpy as np
from visionkit.runtime import mediapipe_backend as mb
net = mb.MediaPipeModel(sys.argv[1])
runner, net._runner = net.runner, None
runner.run(np.zeros((32, 48, 3), np.uint8))
task = weakref.ref(runner.task)
runner.cycle = runner
del runner
gc.collect()
assert len(mb._ORPHANS) == 1 and task() is not None and task()._handle, "the Task was not kept for a later close"
net.runner.run(np.zeros((32, 48, 3), np.uint8))  # ordinary code: the orphan is closed here
assert not mb._ORPHANS and task() is None or not task()._handle, "the orphaned Task is still open"
assert list(mb._LIVE.values()) == [net.runner.task]
print("closed")
"""


def test_a_runner_freed_by_the_cycle_collector_does_not_hang(classifier, tmp_path):
    path = classifier.export(format="mediapipe", imgsz=[32, 48], verbose=False)
    script = tmp_path / "gc_runner.py"
    script.write_text(GC_SCRIPT)
    try:
        r = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("freeing an unclosed MediaPipe runner in the cycle collector hung")
    assert r.returncode == 0 and "closed" in r.stdout, r.stderr[-2000:]


def test_a_timm_backbone_detector_exports_to_mediapipe(tmp_path):
    """`backbone=timm/...` models go to the phone like the built-in ones: the writer's own check (MediaPipe against
    PyTorch on the same images) passes, and the file predicts through visionkit (other families:
    tools/check_timm_export.py, docs/transfer.md)."""
    pytest.importorskip("timm", reason="timm is in .venv-edge through the timm extra (make edge)")
    from visionkit.models.build import build_model
    from visionkit.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = {**Model("timm/mobilenetv3_small_050", task="detect").config, "num_classes": 2}
    net = build_model(config).eval()
    ckpt = {
        "task": "detect",
        "model_config": config,
        "state_dict": net.state_dict(),
        "names": ["a", "b"],
        "imgsz": 64,
        "in_channels": 3,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    path = Model(str(save_checkpoint(ckpt, tmp_path / "timm.pt"))).export(format="mediapipe", verbose=False)
    assert path.suffix == ".tflite" and path.stat().st_size > 100_000
    tflite = Model(str(path))
    assert tflite.task.name == "detect" and tflite.names == ["a", "b"]
    results = tflite.predict([np.full((64, 64, 3), 128, np.uint8)], conf=0.0, verbose=False, save=False)
    assert len(results) == 1 and "detections" in results[0]


def test_benchmark_runs_the_mediapipe_files(classifier, tmp_path):
    """`visionkit benchmark` with MediaPipe formats: each file is exported, validated and timed in MediaPipe."""
    from visionkit.benchmark import benchmark

    rows = benchmark(model=str(classifier.ckpt_path), formats="mediapipe,mediapipe-int8", calls=3,
                     project=str(tmp_path), verbose=False)  # fmt: skip
    assert [r["format"] for r in rows] == ["mediapipe", "mediapipe-int8"] and not any(r["error"] for r in rows), rows
    for r in rows:
        assert r["file"].endswith(".tflite") and r["size_mb"] > 0 and 0 < r["latency_ms"] <= r["p95_ms"]
        assert r["metric"] == "top1" and 0.0 <= r["value"] <= 1.0

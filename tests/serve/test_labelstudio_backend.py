"""The Label Studio ML backend and the offline pre-annotation path: brush RLE that Label Studio's own decoder
reads, labeling-config matching, the HTTP protocol (in order, per-task errors, bad bodies, 1,000 tasks in bounded
memory, /health during a batch), and predict → tasks JSON → import giving back the predicted boxes and masks.
The round trip through a real Label Studio server is in tests/data/test_labelstudio_server.py."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TASKS, post_json, run_cli, serve_labelstudio, spread_head, spread_segmenter_head, train_tiny
from visionkit import Model
from visionkit.data.format import read_label_file
from visionkit.data.labelstudio.prelabel import default_config, mask_polygons, plan
from visionkit.data.labelstudio.rle import decode_brush_mask, decode_rle, encode_brush_mask, encode_rle
from visionkit.errors import UsageError

RECT = """<View><Image name="img" value="$picture"/>
  <RectangleLabels name="box" toName="img"><Label value="circle"/><Label value="square"/><Label value="triangle"/>
  <Label value="star"/></RectangleLabels></View>"""
BRUSH = """<View><Image name="image" value="$image"/>
  <BrushLabels name="paint" toName="image"><Label value="circle"/><Label value="square"/><Label value="triangle"/>
  <Label value="star"/></BrushLabels></View>"""


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory) -> Model:
    m = train_tiny("detect", "yolo-n", shapes_root, tmp_path_factory)
    spread_head(m)  # many distinct boxes to compare, not one blob
    return Model(str(m.ckpt_path))


@pytest.fixture(scope="module")
def segmenter(shapes_root, tmp_path_factory) -> Model:
    m = train_tiny("segment", "unet-n", shapes_root, tmp_path_factory)
    spread_segmenter_head(m)  # several classes in the mask, following the image
    return Model(str(m.ckpt_path))


@pytest.fixture
def images(shapes_root, tmp_path) -> Path:
    """Four shapes images, two of them resized to non-square sizes, in a folder of their own."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, p in enumerate(sorted((shapes_root / "images/val").glob("*.jpg"))[:4]):
        img = cv2.imread(str(p))
        if k % 2:
            img = cv2.resize(img, (72 + 8 * k, 40))
        cv2.imwrite(str(folder / f"im{k}.png"), img)
    return folder


# -- brush RLE and the labeling config ---------------------------------------------------------------------------
def test_brush_rle_round_trips_and_label_studio_decodes_it():
    from label_studio_sdk.converter.brush import decode_rle as ls_decode

    rng = np.random.default_rng(0)
    masks = [np.zeros((1, 1), bool), np.ones((3, 5), bool), rng.random((37, 53)) < 0.5]
    blob = np.zeros((300, 420), bool)  # runs longer than the widest run field (65,536 values) are split
    blob[40:260, 10:400] = True
    masks.append(blob)
    for mask in masks:
        rle = encode_brush_mask(mask)
        assert all(isinstance(b, int) and 0 <= b <= 255 for b in rle)
        h, w = mask.shape
        assert np.array_equal(decode_brush_mask(rle, h, w) == 255, mask)
        rgba = np.asarray(ls_decode(rle)).reshape(h, w, 4)  # Label Studio's own decoder draws the same mask
        assert np.array_equal(rgba[..., 3] == 255, mask)
    assert len(encode_brush_mask(blob)) < blob.size * 4 // 100  # compact: 1 % of the RGBA bytes for a blob
    for n in (1, 7, 8, 9, 16, 17, 255, 256, 257, 65535, 65536, 65537, 131072, 131073):  # run-field boundaries
        values = np.r_[np.full(n, 3, np.uint8), np.uint8(9)]
        assert np.array_equal(decode_rle(encode_rle(values)), values), n
        assert np.array_equal(np.asarray(ls_decode(encode_rle(values))), values), n


def test_config_matching_names_map_and_refusals():
    names = ["circle", "square", "triangle", "star"]
    target = plan(TASKS["detect"], names, RECT)
    assert (target.control.name, target.image, target.data_key) == ("box", "img", "picture")
    assert target.label_of == {0: "circle", 1: "square", 2: "triangle", 3: "star"} and target.unused == []
    config = RECT.replace('"circle"', '"Round"')
    with pytest.raises(UsageError, match="'Round' that the model does not know"):
        plan(TASKS["detect"], names, config)
    mapped = plan(TASKS["detect"], names, config, "circle:Round")
    assert mapped.label_of[0] == "Round"
    with pytest.raises(UsageError, match="names_map names 'oval'"):
        plan(TASKS["detect"], names, config, "oval:Round")
    with pytest.raises(UsageError, match=r"no <RectangleLabels> tag.*<BrushLabels name='paint'>"):
        plan(TASKS["detect"], names, BRUSH)
    with pytest.raises(UsageError, match="no Label Studio region type"):
        plan(TASKS["depth"], names, BRUSH)
    seg = plan(TASKS["segment"], ["background", *names], BRUSH)  # the background class gets no region
    assert seg.unused == ["background"] and seg.label_of[1] == "circle"
    poly = plan(TASKS["segment"], ["background", *names], default_config(TASKS["segment"], names, "polygonlabels"))
    assert poly.type == "polygonlabels"
    choices = plan(TASKS["classify"], names, default_config(TASKS["classify"], names))
    assert choices.type == "choices" and choices.label_of[3] == "star"


def test_mask_polygons_trace_each_part():
    from visionkit.data.format import fill_polygon

    mask = np.zeros((30, 40), bool)
    mask[3:12, 5:20] = True
    mask[18:27, 25:38] = True
    polys = mask_polygons(mask)
    assert len(polys) == 2
    back = np.zeros(mask.shape, np.uint8)
    for p in polys:
        fill_polygon(back, p, 1)
    assert np.array_equal(back == 1, mask)  # rectangles come back pixel-exact through the importer's fill


# -- the offline path: predict → tasks JSON → import ---------------------------------------------------------------
def _import(tasks_json: Path, images: Path, config: Path, out: Path) -> dict:
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={tasks_json}",
        f"images={images}",
        f"config={config}",
        "predictions=True",
        f"out={out}",
        "val=0",
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    return json.loads((out / "import_report.json").read_text())


def test_offline_round_trip_boxes(detector, images, tmp_path):
    results = detector.predict(
        str(images), save_labelstudio=True, project=str(tmp_path / "p"), conf=0.25, verbose=False
    )
    run = detector.save_dir
    tasks = json.loads((run / "labelstudio_tasks.json").read_text())
    assert len(tasks) == 4 and tasks[0]["data"]["image"] == "/data/local-files/?d=im0.png"
    assert tasks[0]["predictions"][0]["model_version"].startswith("best.pt@")
    total = sum(len(r["detections"]) for r in results)
    assert total > 4
    report = _import(run / "labelstudio_tasks.json", images, run / "labelstudio_config.xml", tmp_path / "ds")
    assert report["regions"]["written"] == total and report["regions"]["skipped"] == 0
    for r in results:
        w, h = r["width"], r["height"]
        rows = read_label_file(tmp_path / "ds/labels/train" / (Path(r["image"]).stem + ".txt"))
        expected = [
            (
                d["class"],
                [
                    (d["box"][0] + d["box"][2]) / 2 / w,
                    (d["box"][1] + d["box"][3]) / 2 / h,
                    (d["box"][2] - d["box"][0]) / w,
                    (d["box"][3] - d["box"][1]) / h,
                ],
            )
            for d in r["detections"]
        ]
        assert [c for c, _ in rows] == [c for c, _ in expected]
        assert np.abs(np.array([xy for _, xy in rows]) - np.array([xy for _, xy in expected])).max() <= 1e-6


def test_offline_round_trip_masks_and_polygons(segmenter, images, tmp_path):
    results = segmenter.predict(str(images), save_labelstudio=True, project=str(tmp_path / "p"), verbose=False)
    run = segmenter.save_dir
    classes_seen = {a["class"] for r in results for a in r["classes"]}
    assert len(classes_seen) >= 3  # more than a flat mask
    _import(run / "labelstudio_tasks.json", images, run / "labelstudio_config.xml", tmp_path / "ds")
    for r in results:  # the brush regions import to exactly the predicted class map (same class order)
        mask = cv2.imread(str(tmp_path / "ds/masks/train" / (Path(r["image"]).stem + ".png")), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, r["_mask"])
    config = tmp_path / "poly.xml"
    config.write_text(default_config(TASKS["segment"], segmenter.names, "polygonlabels"))
    segmenter.predict(
        str(images), save_labelstudio=True, label_config=str(config), project=str(tmp_path / "q"), verbose=False
    )
    tasks = json.loads((segmenter.save_dir / "labelstudio_tasks.json").read_text())
    regions = [g for t in tasks for g in t["predictions"][0]["result"]]
    assert regions and all(g["type"] == "polygonlabels" and len(g["value"]["points"]) >= 3 for g in regions)
    assert all(0 <= x <= 100 and 0 <= y <= 100 for g in regions for x, y in g["value"]["points"])


def test_offline_refuses_a_config_that_does_not_fit(detector, images, tmp_path):
    config = tmp_path / "c.xml"
    config.write_text(RECT.replace('"star"', '"dog"'))
    with pytest.raises(UsageError, match="'dog' that the model does not know"):
        detector.predict(
            str(images), save_labelstudio=True, label_config=str(config), project=str(tmp_path / "p"), verbose=False
        )
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").rglob("labelstudio_tasks.json"))


# -- the HTTP server ------------------------------------------------------------------------------------------------
def _client(model: Model, limits=None, auth=None, **kw):
    from starlette.testclient import TestClient

    from visionkit.serve.app import create_app
    from visionkit.serve.prelabeler import PreLabeler

    labeler = PreLabeler(model.ckpt_path, **kw)
    return TestClient(create_app(labeler, limits, auth)), labeler


def _task(i: int, name: str) -> dict:
    return {"id": i, "data": {"picture": f"/data/upload/3/0123abcd-{name}"}}


def test_server_protocol_order_errors_and_bad_bodies(detector, images):
    client, labeler = _client(detector, images=str(images), conf=0.25, batch=3)
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["task"] == "detect"
    setup = client.post(
        "/setup",
        json={"project": "3.1700000000", "schema": RECT, "hostname": "http://127.0.0.1:9", "access_token": "t"},
    ).json()
    assert setup == {"model_version": labeler.model_version} and labeler.model_version.startswith("best.pt@")
    tasks = [
        _task(1, "im0.png"),
        _task(2, "missing.png"),
        _task(3, "im1.png"),
        _task(4, "im2.png"),
        {"id": 5, "data": {"picture": "/data/local-files/?d=../../etc/passwd"}},
    ]
    r = client.post("/predict", json={"tasks": tasks, "label_config": RECT, "project": "3.1700000000"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 5
    assert results[1]["result"] == [] and "missing.png" in results[1]["error"]
    assert results[4]["result"] == [] and "refused image path" in results[4]["error"]
    expected = detector.infer([cv2.imread(str(images / n)) for n in ("im0.png", "im1.png", "im2.png")], conf=0.25)
    for got, want in zip([results[0], results[2], results[3]], expected):
        assert "error" not in got and got["model_version"] == labeler.model_version
        w, h = want["width"], want["height"]
        assert len(got["result"]) == len(want["detections"]) > 0
        for region, d in zip(got["result"], want["detections"]):
            v = region["value"]
            assert region["from_name"] == "box" and region["to_name"] == "img" and v["rotation"] == 0
            assert v["rectanglelabels"] == [d["name"]] and region["score"] == pytest.approx(d["score"], abs=1e-4)
            assert (region["original_width"], region["original_height"]) == (w, h)
            x1, y1, x2, y2 = d["box"]
            assert np.allclose(
                [v["x"], v["y"], v["width"], v["height"]],
                [x1 / w * 100, y1 / h * 100, (x2 - x1) / w * 100, (y2 - y1) / h * 100],
                atol=1e-9,
            )
        assert got["score"] == pytest.approx(np.mean([d["score"] for d in want["detections"]]), abs=1e-4)
    # bad bodies get 400 with a message, a config without a rectangle tag 422; the server keeps answering
    assert client.post("/predict", content=b"{not json").status_code == 400
    bad = client.post("/predict", json={"tasks": "all", "label_config": RECT})
    assert bad.status_code == 400 and "list of Label Studio tasks" in bad.json()["error"]
    no_tag = client.post("/setup", json={"schema": BRUSH})
    assert no_tag.status_code == 422 and "<RectangleLabels>" in no_tag.json()["error"]
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).json()["status"] == "ok"
    assert client.get("/health").json()["status"] == "UP"


def test_a_thousand_tasks_in_batches_of_bounded_size(detector, images, monkeypatch):
    client, labeler = _client(detector, images=str(images), batch=8)
    sizes = []
    infer = labeler.model.infer

    def counting(batch, **kw):
        sizes.append(len(batch))
        return infer(batch, **kw)

    monkeypatch.setattr(labeler.model, "infer", counting)
    tasks = [_task(i, f"im{i % 4}.png") for i in range(1000)]
    r = client.post("/predict", json={"tasks": tasks, "label_config": RECT})
    assert r.status_code == 200 and len(r.json()["results"]) == 1000
    assert max(sizes) == 8 and sum(sizes) == 1000  # never more than one batch of decoded images at once
    first, fifth = r.json()["results"][0], r.json()["results"][4]
    assert first["result"] == fifth["result"] or [g["value"] for g in first["result"]] == [
        g["value"] for g in fifth["result"]
    ]  # the same image gives the same regions in any batch


def test_segmenter_and_classifier_regions(segmenter, shapes_root, images, tmp_path_factory):
    client, _ = _client(segmenter, images=str(images))
    task = {"id": 7, "data": {"image": "im1.png"}}
    got = client.post("/predict", json={"tasks": [task], "label_config": BRUSH}).json()["results"][0]
    want = segmenter.infer([cv2.imread(str(images / "im1.png"))])[0]
    h, w = want["_mask"].shape
    painted = {g["value"]["brushlabels"][0]: decode_brush_mask(g["value"]["rle"], h, w) == 255 for g in got["result"]}
    expected = {a["name"]: want["_mask"] == a["class"] for a in want["classes"] if a["name"] != "background"}
    assert painted.keys() == expected.keys() and all(np.array_equal(painted[k], expected[k]) for k in expected)
    classifier = train_tiny("classify", "mnist-tiny", shapes_root, tmp_path_factory)
    client, _ = _client(classifier, images=str(images))
    config = default_config(TASKS["classify"], classifier.names)
    got = client.post("/predict", json={"tasks": [task], "label_config": config}).json()["results"][0]
    top = classifier.infer([cv2.imread(str(images / "im1.png"))])[0]["top"][0]
    assert got["result"][0]["value"] == {"choices": [top["name"]]}
    assert got["score"] == pytest.approx(top["score"], abs=1e-4)


@pytest.mark.slow
def test_cli_server_answers_health_during_a_batch_and_refuses_a_busy_port(detector, images, tmp_path):
    slow = tmp_path / "slow"  # many large copies of one image: a batch that takes a while
    slow.mkdir()
    big = cv2.resize(cv2.imread(str(images / "im0.png")), (640, 640))
    cv2.imwrite(str(slow / "big.png"), big)
    proc, url = serve_labelstudio(detector.ckpt_path, f"images={slow}", "batch=4", "imgsz=640")
    try:
        answer: dict = {}
        worker = threading.Thread(
            target=lambda: answer.update(
                post_json(
                    f"{url}/predict",
                    {"tasks": [{"id": i, "data": {"picture": "big.png"}} for i in range(64)], "label_config": RECT},
                    300,
                )
            )
        )
        worker.start()
        busy_seen, t0 = [], time.time()
        while worker.is_alive() and time.time() - t0 < 300:
            t = time.time()
            health = json.loads(urllib.request.urlopen(f"{url}/health", timeout=5).read())
            busy_seen.append((health["busy"], time.time() - t))
            time.sleep(0.05)
        worker.join()
        assert len(answer["results"]) == 64
        during = [dt for busy, dt in busy_seen if busy]
        assert during and max(during) < 2.0  # /health answered quickly while the batch ran
        r = run_cli("serve", "labelstudio", f"model={detector.ckpt_path}", f"port={url.rsplit(':', 1)[1]}")
        assert r.returncode != 0 and "pick another port=" in r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.log.close()


def test_cli_refuses_a_missing_model_and_unknown_keys(tmp_path):
    r = run_cli("serve", "labelstudio", f"model={tmp_path / 'nope.pt'}")
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = run_cli("serve", "labelstudio", "model=x.pt", "prot=1")
    assert r.returncode != 0 and "Did you mean 'port'" in r.stderr


def test_an_exported_onnx_model_serves_the_same_regions(detector, images):
    onnx = Model(str(detector.export(format="onnx", verbose=False)))
    client, labeler = _client(onnx, images=str(images), conf=0.25)
    assert labeler.model_version.startswith("best.onnx@")
    got = client.post("/predict", json={"tasks": [_task(1, "im1.png")], "label_config": RECT}).json()["results"][0]
    want = onnx.infer([cv2.imread(str(images / "im1.png"))], conf=0.25)[0]
    assert [r["value"]["rectanglelabels"][0] for r in got["result"]] == [d["name"] for d in want["detections"]]
    assert len(got["result"]) > 0


def test_a_failure_stays_with_its_task_and_bad_bodies_are_answered(detector, images, monkeypatch):
    from visionkit.serve.app import Limits

    client, labeler = _client(detector, Limits.defaults(max_body_bytes=1000), images=str(images), batch=4)
    infer = labeler.model.infer

    def flaky(batch, **kw):  # the model breaks on the non-square image only
        if any(img.shape[0] != img.shape[1] for img in batch):
            if len(batch) == 1:
                raise RuntimeError("out of memory (simulated)")
            raise RuntimeError("batch failed (simulated)")
        return infer(batch, **kw)

    monkeypatch.setattr(labeler.model, "infer", flaky)
    tasks = [
        _task(1, "im0.png"),
        _task(2, "im1.png"),
        _task(3, "im2.png"),
        {"id": 4, "data": {"picture": "http://[127.0.0.1/x.png"}},
    ]  # a malformed URL
    results = client.post("/predict", json={"tasks": tasks, "label_config": RECT}).json()["results"]
    assert len(results) == 4
    assert results[1]["result"] == [] and "RuntimeError: out of memory" in results[1]["error"]
    assert results[3]["result"] == [] and results[3]["error"].startswith("task 4:")
    assert "error" not in results[0] and "error" not in results[2] and results[0]["result"]
    bad_xml = client.post("/predict", json={"tasks": tasks[:1], "label_config": "<View><Image"})
    assert bad_xml.status_code == 422 and "not valid XML" in bad_xml.json()["error"]
    big = client.post("/predict", json={"tasks": [_task(i, "im0.png") for i in range(100)], "label_config": RECT})
    assert big.status_code == 413
    assert client.get("/health").json()["status"] == "UP"


@pytest.mark.parametrize("guarded", [False, True], ids=["importer-fetch", "server-fetch"])
def test_the_token_goes_to_the_label_studio_server_only(tmp_path, guarded):
    """Images from task data: the Authorization header reaches the Label Studio server, never another host, not
    even through a URL that looks like an upload or a redirect from the server; with the importer's fetch and with
    the server's (which follows redirects itself, and here allows the other host by name)."""
    import http.server

    from visionkit.data.labelstudio.images import fetch
    from visionkit.data.labelstudio.task_images import TaskImages
    from visionkit.serve.fetch import Fetcher

    png = cv2.imencode(".png", np.full((6, 8, 3), 200, np.uint8))[1].tobytes()
    seen: list[tuple[int, str | None]] = []

    def server(redirect_to: str | None = None):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.server.server_port, self.headers.get("Authorization")))
                if redirect_to and "redir" in self.path:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + "/data/upload/1/abcd1234-x.png")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd, f"http://127.0.0.1:{httpd.server_port}"

    other, other_url = server()
    home, home_url = server(redirect_to=other_url)
    try:
        fetcher = Fetcher(allow_hosts=f"127.0.0.1:{other.server_port}").fetch if guarded else fetch
        loader = TaskImages(base_url=home_url, headers={"Authorization": "Token secret"}, fetch=fetcher)
        for ref in (
            "/data/upload/1/abcd1234-x.png",
            f"{other_url}/data/upload/1/abcd1234-x.png",
            f"{other_url}/pic.png",
            "/data/upload/9/abcd1234-redir.png",
        ):
            img = loader.load({"id": 1, "data": {"image": ref}}, "image")
            assert img.shape == (6, 8, 3)
    finally:
        home.shutdown()
        other.shutdown()
    assert seen[0] == (home.server_port, "Token secret")  # the server's own upload
    assert seen[1] == (other.server_port, None) and seen[2] == (other.server_port, None)  # foreign hosts
    assert seen[3] == (home.server_port, "Token secret") and seen[4] == (other.server_port, None)  # redirected


def test_infer_takes_one_image_or_a_list_and_batches_arrays(detector, images):
    img = cv2.imread(str(images / "im0.png"))
    one = detector.infer(img)
    assert len(one) == 1 and one[0]["image"] == "array0"
    many = detector.infer([img, str(images / "im1.png"), img], batch=2)
    assert [r["image"] for r in many] == ["array0", str(images / "im1.png"), "array2"]
    assert many[0]["detections"] == one[0]["detections"] == many[2]["detections"]

"""The Label Studio importer on real exports (tests/fixtures/labelstudio, from a Label Studio 1.23 server) and on
fixtures written here after Label Studio's documented format for what those lack."""

import copy
import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import FIXTURES, run_cli
from visionkit.data.format import read_label_file
from visionkit.data.labelstudio import import_labelstudio
from visionkit.data.labelstudio.images import UnsafePathError
from visionkit.data.labelstudio.rle import decode_brush_mask
from visionkit.data.labelstudio.sources import load_export
from visionkit.errors import DataError

LS = FIXTURES / "labelstudio"
CONFIGS = json.loads((LS / "label_configs.json").read_text())
IMAGES = LS / "images"


def task(name: str) -> dict:
    return json.loads((LS / f"{name}.json").read_text())


def run(tasks, out, **kw):
    kw.setdefault("images_dir", IMAGES)
    kw.setdefault("val", 0.0)
    return import_labelstudio(tasks, out, verbose=False, **kw)


def assert_accounting(report):
    r = report["regions"]
    assert r["written"] + r["skipped"] == r["in_export"], r
    assert r["skipped"] == len(report["skipped_regions"])


def test_rectangles_two_annotators_and_prediction(tmp_path):
    t = task("task_rectangle_choices_2annotators_prediction")
    rep = run([t], tmp_path / "d", config_xml=CONFIGS["detect"])
    assert_accounting(rep)
    # default: no ground-truth annotation, so the latest one (37: one cat box, 'outdoor')
    assert rep["regions"] == {"in_export": 5, "written": 2, "skipped": 3}
    assert {s["reason"] for s in rep["skipped_regions"]} == {"annotation not selected (annotations=ground_truth)"}
    assert (tmp_path / "d/classify/train/outdoor/img0.png").is_file()
    assert (tmp_path / "d/classify/train/indoor").is_dir()  # every choice class gets its folder
    assert rep["classes"] == {"names": ["cat", "dog"], "from": "labeling config", "choices": ["indoor", "outdoor"]}
    assert any("prediction ids only" in n for n in rep["notes"])
    # the upload hash prefix is removed from the file name, and the bytes are the original image's
    assert (tmp_path / "d/images/train/img0.png").read_bytes() == (IMAGES / "img0.png").read_bytes()

    first = run([t], tmp_path / "f", config_xml=CONFIGS["detect"], annotations="first")
    rows = read_label_file(tmp_path / "f/labels/train/img0.txt")
    # annotation 36 on a 320×200 image: cat x=10% y=10% w=40% h=50%, dog x=55.5% y=40.25% w=30% h=45%
    assert rows[0][0] == 0 and np.allclose(rows[0][1], [0.30, 0.35, 0.40, 0.50], atol=1e-6)
    assert rows[1][0] == 1 and np.allclose(rows[1][1], [0.705, 0.6275, 0.30, 0.45], atol=1e-6)
    assert first["written_by_kind"]["choices"] == {"indoor": 1}

    merged = run([t], tmp_path / "m", config_xml=CONFIGS["detect"], annotations="merge")
    assert len(read_label_file(tmp_path / "m/labels/train/img0.txt")) == 3
    assert merged["regions"]["skipped"] == 1  # the second choice: multi-label is not supported
    assert_accounting(merged)

    both = run([t], tmp_path / "a", config_xml=CONFIGS["detect"], annotations="all")
    assert sorted(p.name for p in (tmp_path / "a/images/train").iterdir()) == ["img0_a36.png", "img0_a37.png"]
    assert both["regions"]["written"] == 5


def test_polygon_rows_and_mask(tmp_path):
    rep = run([task("task_polygon")], tmp_path / "p", config_xml=CONFIGS["polygon"])
    assert_accounting(rep)
    rows = read_label_file(tmp_path / "p/labels/train/img4.txt")
    pts = np.array([[10.0, 10.0], [60.0, 12.5], [55.0, 70.0], [12.0, 65.0]]) / 100
    assert rows == [(0, pytest.approx(list(pts.reshape(-1)), abs=1e-6))]
    mask = cv2.imread(str(tmp_path / "p/masks/train/img4.png"), cv2.IMREAD_UNCHANGED)
    px = pts * [320, 200]
    area = 0.5 * abs(np.dot(px[:, 0], np.roll(px[:, 1], 1)) - np.dot(px[:, 1], np.roll(px[:, 0], 1)))
    assert set(np.unique(mask)) == {0, 1}  # road = class 0 → mask value 1
    assert abs((mask == 1).sum() - area) < 0.02 * area


def test_brush_decodes_exactly_and_merges_into_one_mask(tmp_path):
    t = task("task_brush")
    sky = t["annotations"][0]["result"][0]
    decoded = decode_brush_mask(sky["value"]["rle"], sky["original_height"], sky["original_width"])
    assert np.array_equal(decoded, np.load(LS / "brush_mask_sky.npy"))
    rep = run([t], tmp_path / "b", config_xml=CONFIGS["brush"])
    assert rep["written_by_kind"]["brushlabels"] == {"ground": 1, "sky": 1}
    mask = cv2.imread(str(tmp_path / "b/masks/train/img5.png"), cv2.IMREAD_UNCHANGED)
    ground = t["annotations"][0]["result"][1]
    ground_px = decode_brush_mask(ground["value"]["rle"], 200, 320) >= 128
    assert np.array_equal(mask == 2, ground_px)  # ground (class 1) is drawn later: it wins overlaps
    assert np.array_equal(mask == 1, (decoded >= 128) & ~ground_px)
    # each brush region is also one object: a row (the box of its mask) and its exact pixels in instances/
    assert len(read_label_file(tmp_path / "b/labels/train/img5.txt")) == 2
    assert (tmp_path / "b/instances/train/img5.json").is_file()


def test_keypoints_skipped_with_count(tmp_path):
    rep = run([task("task_keypoints")], tmp_path / "k", config_xml=CONFIGS["keypoints"])
    assert_accounting(rep)
    assert rep["regions"] == {"in_export": 4, "written": 1, "skipped": 3}
    assert all(s["type"] == "keypointlabels" and "pose" in s["reason"] for s in rep["skipped_regions"])


def _rect(x, y, w, h, label="cat", rotation=0.0, rid="r", ow=320, oh=200):
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": ow,
        "original_height": oh,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    }


def _task(tid, image, results=None, cancelled=False, predictions=None, gt=False):
    anns = (
        []
        if results is None
        else [
            {
                "id": 100 + tid,
                "result": results,
                "was_cancelled": cancelled,
                "ground_truth": gt,
                "created_at": "2026-01-01",
                "updated_at": "2026-01-01",
            }
        ]
    )
    return {"id": tid, "data": {"image": image}, "annotations": anns, "predictions": predictions or []}


def test_rotation_is_applied_in_pixel_space_on_a_non_square_image(tmp_path):
    # 320×200 image; box at (50%, 25%), 20% × 10%, rotated 90° clockwise about its top-left corner:
    # in pixels (160, 50), 64 × 20 → corners (160,50) (160,114) (140,114) (140,50)
    t = _task(1, "/data/upload/1/0a1b2c3d-img2.png", [_rect(50, 25, 20, 10, rotation=90)])
    rep = run([t], tmp_path / "r", config_xml=CONFIGS["detect"])
    ((cls, row),) = read_label_file(tmp_path / "r/labels/train/img2.txt")
    assert np.allclose(row, [150 / 320, 82 / 200, 20 / 320, 64 / 200], atol=1e-6)
    assert rep["rotated_boxes"] == 1
    # rotating in percent space (a known converter bug) would give x 40-50 %, y 25-45 % instead
    assert not np.allclose(row[2:], [0.10, 0.20])


def test_cancelled_predictions_background_and_missing_images(tmp_path):
    pred = {"id": 9, "score": 0.8, "model_version": "m1", "result": [_rect(10, 10, 20, 20, rid="p1")]}
    tasks = [
        _task(1, "/data/upload/1/0a1b2c3d-img0.png", [_rect(10, 10, 10, 10)], cancelled=True),
        _task(2, "/data/upload/1/0a1b2c3d-img1.png", predictions=[pred]),
        _task(3, "/data/upload/1/0a1b2c3d-img3.png"),
        _task(4, "/data/upload/1/0a1b2c3d-missing.png", [_rect(1, 1, 5, 5, rid="m")]),
    ]
    rep = run(copy.deepcopy(tasks), tmp_path / "x", config_xml=CONFIGS["detect"], background=True)
    assert_accounting(rep)
    reasons = {s["region"]: s["reason"] for s in rep["skipped_regions"]}
    assert reasons["r"] == "cancelled annotation"
    assert reasons["p1"].startswith("predictions ignored")
    assert "not found" in reasons["m"] and "task skipped" in reasons["m"]
    assert sorted(p.name for p in (tmp_path / "x/images/train").iterdir()) == ["img0.png", "img1.png", "img3.png"]
    assert read_label_file(tmp_path / "x/labels/train/img3.txt") == []  # background image

    rep2 = run(copy.deepcopy(tasks), tmp_path / "y", config_xml=CONFIGS["detect"], predictions=True)
    assert_accounting(rep2)
    assert rep2["written_by_kind"]["rectanglelabels"] == {"cat": 1}
    assert sorted(p.name for p in (tmp_path / "y/images/train").iterdir()) == ["img1.png"]
    skipped = {t["task"]: t["reason"] for t in rep2["tasks"]["skipped"]}
    assert "no annotation" in skipped[1] and "no annotation" in skipped[3] and "not found" in skipped[4]


def test_unknown_labels(tmp_path):
    t = _task(1, "/data/upload/1/0a1b2c3d-img0.png", [_rect(10, 10, 10, 10, label="zebra")])
    with pytest.raises(DataError, match="task 1: label 'zebra' is not in the class list"):
        run([t], tmp_path / "u", config_xml=CONFIGS["detect"])
    assert not (tmp_path / "u").exists()
    rep = run([t], tmp_path / "v", config_xml=CONFIGS["detect"], unknown="add")
    assert rep["classes"]["names"] == ["cat", "dog", "zebra"]
    assert read_label_file(tmp_path / "v/labels/train/img0.txt")[0][0] == 2


def test_class_order_names_config_or_first_appearance(tmp_path):
    t = _task(1, "/data/upload/1/0a1b2c3d-img0.png", [_rect(1, 1, 5, 5, "dog", rid="a"), _rect(9, 9, 5, 5, "cat")])
    assert run([t], tmp_path / "a", names=["dog", "cat"])["classes"]["names"] == ["dog", "cat"]
    rep = run([t], tmp_path / "b")
    assert rep["classes"] == {"names": ["dog", "cat"], "from": "first appearance", "choices": []}
    assert any("first appearance" in n for n in rep["notes"])
    assert run([t], tmp_path / "c", config_xml=CONFIGS["detect"])["classes"]["names"] == ["cat", "dog"]


def test_local_files_and_same_base_names(tmp_path):
    images = tmp_path / "imgs"
    (images / "a").mkdir(parents=True)
    (images / "b").mkdir()
    shutil.copy(IMAGES / "img0.png", images / "a/photo.png")
    shutil.copy(IMAGES / "img1.png", images / "b/photo.png")
    tasks = [
        _task(1, "/data/local-files/?d=a/photo.png", [_rect(1, 1, 5, 5)]),
        _task(2, "/data/local-files/?d=b/photo.png", [_rect(1, 1, 5, 5)]),
    ]
    run(tasks, tmp_path / "o", images_dir=images, config_xml=CONFIGS["detect"])
    out = sorted((tmp_path / "o/images/train").iterdir())
    assert [p.name for p in out] == ["photo_t1.png", "photo_t2.png"]
    assert out[0].read_bytes() == (images / "a/photo.png").read_bytes()
    assert out[1].read_bytes() == (images / "b/photo.png").read_bytes()


@pytest.mark.parametrize(
    "url", ["/data/local-files/?d=../../etc/passwd", "/data/local-files/?d=/etc/passwd", "../../etc/passwd"]
)
def test_paths_from_task_data_cannot_escape(tmp_path, url):
    with pytest.raises(UnsafePathError, match="refused image path"):
        run([_task(1, url, [_rect(1, 1, 5, 5)])], tmp_path / "o")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder left behind


def test_split_by_task_is_deterministic_and_reruns_are_byte_identical(tmp_path):
    tasks = [
        _task(i, f"/data/upload/1/0a1b2c3d-img{i % 6}.png", [_rect(i, i, 10, 10, rid=f"r{i}")]) for i in range(1, 11)
    ]
    rep = run(tasks, tmp_path / "s", config_xml=CONFIGS["detect"], val=0.2, test=0.1, seed=3)
    assert rep["splits"] == {"test": 1, "train": 7, "val": 2}
    before = {p.relative_to(tmp_path / "s"): p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    run(tasks, tmp_path / "s", config_xml=CONFIGS["detect"], val=0.2, test=0.1, seed=3, exist_ok=True)
    after = {p.relative_to(tmp_path / "s"): p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    assert before == after


def test_existing_output_is_not_replaced_by_default(tmp_path):
    (tmp_path / "o").mkdir()
    with pytest.raises(Exception, match="exist_ok=True"):
        run([task("task_polygon")], tmp_path / "o")


def test_json_min_is_accepted_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="JSON_MIN"):
        tasks, fmt = load_export(LS / "polygon_JSON_MIN.json")
    assert fmt == "JSON_MIN"
    run(tasks, tmp_path / "m", config_xml=CONFIGS["polygon"])
    rows = read_label_file(tmp_path / "m/labels/train/img4.txt")
    assert rows[0][0] == 0 and len(rows[0][1]) == 8


def test_cli_import_prints_the_table_and_writes_the_report(tmp_path):
    cfg = tmp_path / "config.xml"
    cfg.write_text(CONFIGS["brush"])
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={LS / 'brush_JSON.json'}",
        f"images={IMAGES}",
        f"out={tmp_path / 'ds'}",
        f"config={cfg}",
        "val=0",
    )
    assert r.returncode == 0, r.stderr
    assert "brushlabels" in r.stdout and "2 in export = 2 written + 0 skipped" in r.stdout
    report = json.loads((tmp_path / "ds/import_report.json").read_text())
    assert report["regions"] == {"in_export": 2, "written": 2, "skipped": 0}
    r = run_cli("data", "import", "labelstudio", f"src={tmp_path / 'nope.json'}", f"out={tmp_path / 'x'}")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_http_images_only_with_download(tmp_path):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(IMAGES))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/img3.png"
        t = _task(1, url, [_rect(10, 10, 10, 10)])
        with pytest.raises(DataError, match="nothing to import.*download=False"):
            run([t], tmp_path / "no", images_dir=None, config_xml=CONFIGS["detect"])
        rep = run([t], tmp_path / "yes", images_dir=None, config_xml=CONFIGS["detect"], download=True)
        assert rep["images_written"] == 1
        assert (tmp_path / "yes/images/train/img3.png").read_bytes() == (IMAGES / "img3.png").read_bytes()
    finally:
        srv.shutdown()


def test_server_import_without_the_sdk_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    from visionkit.data.commands import import_labelstudio as cmd
    from visionkit.errors import UsageError

    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'visionkit\[labelstudio\]'"):
        cmd(src="http://127.0.0.1:9", project=1, token="x", out=str(tmp_path / "o"))

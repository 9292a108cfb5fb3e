"""The instances/ sidecar on disk: RLE runs checked before pycocotools reads them, `data check` naming every bad
instance file, `data stats` counting exact masks and crowd regions."""

import json

import cv2
import numpy as np
import pytest

from visionkit.data.check import check_dataset
from visionkit.data.format import write_data_yaml, write_label_file
from visionkit.data.instances import counts_problem, encode_mask, mask_box_row, parse_counts, write_instances
from visionkit.data.stats import dataset_stats


def test_parse_counts_reads_what_pycocotools_writes():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < rng.random()
        counts = encode_mask(m)
        runs = parse_counts(counts)
        flat = m.T.reshape(-1)  # column-major, starting with a run of 0s
        edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
        want = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
        assert runs == ([0] + want if flat[0] else want)
        assert counts_problem(counts, h, w) is None
        assert int(mask_utils.area({"size": [h, w], "counts": counts.encode()})) == int(m.sum())


@pytest.mark.parametrize(
    ("counts", "expect"),
    [
        ("0k?", "cover"),
        ("0 1", "character"),
        ("0R", "truncated"),
        (7, "string"),
        ([1, 2], "cover"),
        ([16, True], "non-negative"),
    ],
)
def test_counts_problem_names_what_is_wrong(counts, expect):
    assert expect in counts_problem(counts, 4, 4)


def _dataset(root):
    """One 16×12 image with a box row, a polygon row and an exact-mask row; a crowd region."""
    (root / "images/train").mkdir(parents=True)
    cv2.imwrite(str(root / "images/train/a.png"), np.zeros((12, 16, 3), np.uint8))
    obj = np.zeros((12, 16), bool)
    obj[2:8, 3:9] = True
    obj[4:6, 5:7] = False
    crowd = np.zeros((12, 16), bool)
    crowd[9:12, 0:5] = True
    write_label_file(
        root / "labels/train/a.txt",
        [(0, [0.5, 0.5, 0.2, 0.2]), (1, [0.1, 0.1, 0.4, 0.1, 0.4, 0.5]), (1, mask_box_row(obj))],
    )
    write_instances(root / "instances/train/a.json", 12, 16, {3: obj}, [(0, crowd)])
    write_data_yaml(
        root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/train", "names": ["a", "b"]}
    )
    return root


def test_check_and_stats_count_exact_masks_and_crowd_regions(tmp_path):
    root = _dataset(tmp_path / "d")
    result = check_dataset(root / "data.yaml", verbose=False, task="detect")
    assert result["errors"] == 0, result["problems"]
    assert result["warnings"] == 0, result["problems"]
    assert result["counts"]["instance files"] == 2  # train and val list the same image
    assert result["counts"]["objects with an exact mask"] == 2 and result["counts"]["crowd (ignore) regions"] == 2
    st = dataset_stats(root / "data.yaml", tmp_path / "st", samples=2, verbose=False)
    assert st["exact_masks"] == {"train": 1, "val": 1} and st["crowd_regions"] == {"train": 1, "val": 1}
    assert sum(st["instances"]["train"].values()) == 3
    assert (tmp_path / "st/mosaic.png").is_file()


def _problems(root):
    result = check_dataset(root / "data.yaml", verbose=False, task="detect")
    return result, [p for p in result["problems"] if "instances" in p["file"]]


@pytest.mark.parametrize(
    ("edit", "expect", "severity"),
    [
        (lambda d: "{not json", "cannot be read as JSON", "error"),
        (lambda d: {**d, "objects": {"x": "0"}}, "objects key 'x'", "error"),
        (lambda d: {**d, "crowd": [{"class": 5, "counts": "0"}]}, "crowd[0] has class 5", "error"),
        (lambda d: {**d, "width": 32}, "is 32×12 but the image is 16×12", "error"),
        (lambda d: {**d, "objects": {**d["objects"], "9": d["objects"]["3"]}}, "label line(s) [9]", "error"),
        (lambda d: {**d, "objects": {"3": "0k?"}}, "objects['3']: RLE runs cover", "error"),
        (lambda d: {**d, "crowd": [{"class": 0, "counts": "zz"}]}, "crowd[0]: RLE counts has the character", "error"),
        (lambda d: {**d, "objects": {"3": encode_mask(np.zeros((12, 16), bool))}}, "has no pixel", "warning"),
        (lambda d: {**d, "objects": {"1": d["objects"]["3"]}}, "row 1 of 'a.txt' is the box", "warning"),
    ],
)
def test_check_names_the_bad_instance_file(tmp_path, edit, expect, severity):
    root = _dataset(tmp_path / "d")
    path = root / "instances/train/a.json"
    doc = edit(json.loads(path.read_text()))
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    result, found = _problems(root)
    assert found, result["problems"]
    assert all(p["file"] == str(path) for p in found)
    assert any(expect in p["problem"] and p["severity"] == severity for p in found), found
    assert (result["errors"] > 0) == (severity == "error")


def test_check_cli_names_a_corrupt_instance_file(tmp_path):
    from tests.conftest import run_cli

    root = _dataset(tmp_path / "d")
    (root / "instances/train/a.json").write_text("[1, 2")
    r = run_cli("data", "check", f"data={root / 'data.yaml'}")
    assert r.returncode == 1 and "a.json" in r.stdout and "cannot be read as JSON" in r.stdout


def test_export_refuses_an_instance_file_that_does_not_fit(tmp_path):
    from visionkit.data.coco import export_coco
    from visionkit.errors import DataError

    root = _dataset(tmp_path / "d")
    path = root / "instances/train/a.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "objects": {"4": doc["objects"]["3"]}}))
    with pytest.raises(DataError, match=r"a\.json' has masks for line\(s\) \[4\] but its label file has 3 row"):
        export_coco(root / "data.yaml", tmp_path / "coco", verbose=False)

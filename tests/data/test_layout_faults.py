"""Data that would be silently wrong: truncated JPEGs, images sharing a stem, label paths that are folders, no
labels at all, COCO sizes that disagree with the files, and label caches of the wrong shape."""

import io
import json

import cv2
import numpy as np
import pytest

from visionkit.cfg import resolve
from visionkit.data.check import check_dataset
from visionkit.data.coco import import_coco
from visionkit.data.datasets import ImageFolderDataset
from visionkit.data.format import image_size, load_data_yaml, read_label_file, read_mask, write_data_yaml
from visionkit.errors import DataError
from visionkit.tasks.detect.dataset import DetectionDataset, load_labels


def _jpeg(path, h=48, w=64, seed=0):
    img = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _dataset(root, images, labels=True):
    """images: {split: [file names]}; each gets a one-box label unless labels=False."""
    for split, names in images.items():
        for i, name in enumerate(names):
            if name.endswith(".jpg"):
                _jpeg(root / "images" / split / name, seed=i)
            else:
                cv2.imwrite(str(root / "images" / split / name), np.full((48, 64, 3), 90, np.uint8))
            if labels:
                (root / "labels" / split).mkdir(parents=True, exist_ok=True)
                (root / "labels" / split / f"{name.rsplit('.', 1)[0]}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    write_data_yaml(root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "names": ["a"]})
    return root


def test_a_truncated_jpeg_is_refused_though_opencv_decodes_it(tmp_path):
    path = _truncate(_jpeg(tmp_path / "cut.jpg"))
    assert cv2.imread(str(path)) is not None  # OpenCV decodes it, the missing half grey: the reason for the check
    with pytest.raises(OSError, match="truncated"):
        image_size(path)
    with pytest.raises(OSError, match="truncated"):
        image_size(io.BytesIO(path.read_bytes()))
    whole = _jpeg(tmp_path / "whole.jpg")
    whole.write_bytes(whole.read_bytes() + b"camera data after the end-of-image marker" * 4)
    assert image_size(whole) == (64, 48)  # data after the end marker is not truncation


def test_truncated_images_are_skipped_by_training_and_reported_by_check(tmp_path):
    root = _dataset(tmp_path / "ds", {"train": ["a.jpg", "b.jpg", "c.jpg"], "val": ["v.jpg"]})
    _truncate(root / "images/train/b.jpg")
    info = load_labels(sorted((root / "images/train").glob("*.jpg")), 1, None)
    assert [p.name for p in info["files"]] == ["a.jpg", "c.jpg"]
    assert len(info["skipped"]) == 1 and "b.jpg" in info["skipped"][0][0] and "truncated" in info["skipped"][0][1]
    result = check_dataset(root / "data.yaml", verbose=False)
    bad = [p for p in result["problems"] if p["file"].endswith("b.jpg")]
    assert len(bad) == 1 and "truncated" in bad[0]["problem"] and bad[0]["severity"] == "error"
    folder = tmp_path / "cls/train/a"
    _jpeg(folder / "1.jpg")
    _truncate(_jpeg(folder / "2.jpg"))
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = ImageFolderDataset(tmp_path / "cls/train")
    assert len(ds) == 1


def test_check_and_training_refuse_stems_and_folders(tmp_path):
    root = _dataset(tmp_path / "ds", {"train": ["a.jpg", "a.png", "b.jpg", "c.jpg"], "val": ["v.jpg"]})
    (root / "labels/train/c.txt").unlink()
    (root / "labels/train/c.txt").mkdir()  # a label path that is a folder
    problems = check_dataset(root / "data.yaml", verbose=False)["problems"]
    text = {p["file"].rsplit("/", 1)[-1]: p["problem"] for p in problems if p["severity"] == "error"}
    assert "2 images share their annotation files" in text["a.txt"] and "a.jpg, a.png" in text["a.txt"]
    assert "are folders, not files" in text["c.txt"]
    from visionkit.tasks.detect.task import DetectTask

    task = DetectTask()
    args = resolve({"data": str(root / "data.yaml")}, task.keys)
    with pytest.raises(DataError) as e:
        task.build_dataset(task.resolve_data(args), "train", 64, False, args)
    assert text["a.txt"] in str(e.value) and text["c.txt"] in str(e.value)  # the very messages check gives


def test_a_split_without_any_label_file_is_an_error_in_check_and_training(tmp_path):
    root = _dataset(tmp_path / "ds", {"train": ["a.jpg", "b.jpg"], "val": ["v.jpg"]}, labels=False)
    problems = check_dataset(root / "data.yaml", verbose=False)["problems"]
    none = [p for p in problems if "none of its" in p["problem"]]
    assert {p["problem"].split("'")[3] for p in none} == {"train", "val"}
    assert all(p["severity"] == "error" and "labels/" in p["file"] for p in none)
    from visionkit.tasks.detect.task import DetectTask

    task = DetectTask()
    args = resolve({"data": str(root / "data.yaml")}, task.keys)
    with pytest.raises(
        DataError, match=r"none of its 2 images has a labelled object; looked in '.*labels/train', which"
    ):
        task.build_dataset(task.resolve_data(args), "train", 64, False, args)
    labelled = _dataset(tmp_path / "ok", {"train": ["a.jpg"], "val": ["v.jpg"]})
    assert not [p for p in check_dataset(labelled / "data.yaml", verbose=False)["problems"] if p["severity"] == "error"]


def _coco(tmp_path, sizes):
    """A COCO file with one box and one polygon per image; sizes: {file: (json w, json h, file w, file h)}."""
    images, anns = [], []
    (tmp_path / "imgs").mkdir()
    for i, (name, (jw, jh, fw, fh)) in enumerate(sizes.items(), 1):
        cv2.imwrite(str(tmp_path / "imgs" / name), np.zeros((fh, fw, 3), np.uint8))
        images.append({"id": i, "file_name": name, "width": jw, "height": jh})
        anns.append(
            {
                "id": 10 * i,
                "image_id": i,
                "category_id": 1,
                "bbox": [jw * 0.25, jh * 0.25, jw * 0.5, jh * 0.5],
                "area": 1.0,
                "iscrowd": 0,
                "segmentation": [[jw * 0.25, jh * 0.25, jw * 0.75, jh * 0.25, jw * 0.75, jh * 0.75]],
            }
        )
    src = tmp_path / "instances.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    return src


def test_coco_sizes_that_differ_from_the_files_are_scaled_or_skipped_never_silently_used(tmp_path):
    src = _coco(tmp_path, {"same.png": (80, 60, 80, 60), "half.png": (80, 60, 40, 30), "turned.png": (80, 60, 60, 80)})
    report = import_coco(str(src), tmp_path / "imgs", tmp_path / "out", val=0.0, verbose=False)
    assert report["images_written"] == 2
    skipped = [s for s in report["skipped"] if s.get("image") == "turned.png"]
    assert len(skipped) == 1 and "the JSON says 80×60 but the file is 60×80" in skipped[0]["reason"]
    assert [s["annotation"] for s in report["skipped"] if "annotation" in s] == [30]  # counted, not dropped
    assert report["resized"] == [{"image": "half.png", "json": "80×60", "file": "40×30"}]
    spec = load_data_yaml(tmp_path / "out/data.yaml")
    root = spec["root"]
    for name, (w, h) in (("same", (80, 60)), ("half", (40, 30))):
        rows = read_label_file(root / f"labels/train/{name}.txt")
        assert len(rows) == 1 and np.allclose(rows[0][1], [0.25, 0.25, 0.75, 0.25, 0.75, 0.75], atol=1e-6)
        mask = read_mask(root / f"masks/train/{name}.png")
        assert mask.shape == (h, w) and mask[int(h * 0.3), int(w * 0.7)] == 1 and mask[int(h * 0.7), int(w * 0.3)] == 0
    assert not (root / "images/train/turned.png").exists()


@pytest.mark.parametrize(
    "content", ["[1, 2, 3]", '{"hash": 5}', '{"hash": "x", "labels": 3', "null", "\xff\xfe", "same-hash-wrong-shapes"]
)
def test_a_label_cache_that_is_not_what_it_should_be_is_rebuilt(tmp_path, content):
    root = _dataset(tmp_path / "ds", {"train": ["a.jpg", "b.jpg"], "val": ["v.jpg"]})
    files = sorted((root / "images/train").glob("*.jpg"))
    cache_dir = root / "labels/train"
    good = load_labels(files, 1, cache_dir)
    cache = cache_dir / "labels.cache.json"
    if content == "same-hash-wrong-shapes":  # the right hash, so it is read, but lists that do not match
        data = json.loads(cache.read_text())
        data["shapes"] = data["shapes"][:1]
        cache.write_text(json.dumps(data))
    else:
        cache.write_bytes(content.encode("latin-1"))
    again = load_labels(files, 1, cache_dir)
    assert again["from_cache"] is False and [len(a) for a in again["labels"]] == [len(a) for a in good["labels"]]
    assert load_labels(files, 1, cache_dir)["from_cache"] is True  # the rebuilt cache is good again
    ds = DetectionDataset(files, ["a"], 64, False, resolve({}), cache_dir=cache_dir, verbose=False)
    assert len(ds) == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
        (b'[{"data": {"image": "a.png"}', "is not JSON"),
        (b'[{"data": {"image": "\xff\xfe.png"}}]', "not UTF-8"),
    ],
)
def test_json_a_user_gives_that_is_broken_is_a_one_line_error_naming_the_file(tmp_path, content, message):
    from visionkit.data.coco import _load
    from visionkit.data.labelstudio.sources import load_export
    from visionkit.errors import DataError

    path = tmp_path / "export.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        load_export(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="is not a COCO instances file") as e:
        _load(path)
    assert str(path) in str(e.value)

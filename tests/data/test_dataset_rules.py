"""Datasets that look fine but are not (issue 28): `data check` and training apply one set of rules
(visionkit/data/rules.py), so what check passes training accepts and what training refuses check reports."""

import json

import cv2
import numpy as np
import pytest

from visionkit.cfg import resolve
from visionkit.data.check import check_dataset
from visionkit.data.coco import import_coco
from visionkit.data.format import load_data_yaml, read_label_file, write_data_yaml
from visionkit.data.labelstudio import import_labelstudio
from visionkit.data.labelstudio.sources import load_export
from visionkit.errors import DataError
from visionkit.tasks.depth.task import DepthTask
from visionkit.tasks.detect.task import DetectTask
from visionkit.tasks.segment.task import SegmentTask

BOX = "0 0.5 0.5 0.4 0.4\n"


def _image(path, value=90, h=32, w=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[: h // 2, : w // 2] = 255 - value  # two images of one stem must differ to catch a mix-up
    assert cv2.imwrite(str(path), img)
    return path


def _dataset(root, splits, names=("a",), **yaml_keys):
    """splits: {split: {image name: label text, or None for no label file}}."""
    for split, images in splits.items():
        for i, (name, label) in enumerate(images.items()):
            _image(root / "images" / split / name, value=40 + 50 * i)
            if label is not None:
                path = root / "labels" / split / (name.rsplit(".", 1)[0] + ".txt")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(label)
    spec = {"path": ".", **{s: f"images/{s}" for s in splits}, **yaml_keys}
    if names is not None:
        spec["names"] = list(names)
    write_data_yaml(root / "data.yaml", spec)
    return root / "data.yaml"


def _errors(yaml, **kw):
    return [p for p in check_dataset(yaml, verbose=False, **kw)["problems"] if p["severity"] == "error"]


def _train_refusal(task, yaml, split="train", **keys) -> str | None:
    """The message training refuses the dataset's ``split`` with, or None when it builds."""
    args = resolve({"data": str(yaml), **keys}, task.keys)
    try:
        task.build_dataset(task.resolve_data(args), split, 64, split == "train", args)
    except DataError as e:
        return str(e)
    return None


def test_a_data_yaml_without_names_is_an_error_in_check_as_in_training(tmp_path):
    yaml = _dataset(tmp_path / "ds", {"train": {"t.jpg": BOX}, "val": {"v.jpg": BOX}}, names=None)
    errors = _errors(yaml)
    assert [e["problem"] for e in errors] == [
        f"'{yaml}' has no names: list the classes, e.g. names: {{0: cat, 1: dog}}"
    ]
    assert _train_refusal(DetectTask(), yaml) == errors[0]["problem"]  # the same rule, the same words
    assert not any("no names" in e["problem"] for e in _errors(yaml, task="depth"))  # depth needs no classes
    named = _dataset(tmp_path / "ok", {"train": {"t.jpg": BOX}, "val": {"v.jpg": BOX}})
    assert _errors(named) == [] and _train_refusal(DetectTask(), named) is None


def test_a_split_without_labelled_objects_is_refused_naming_the_folder_unless_allow_empty(tmp_path):
    root = tmp_path / "ds"
    yaml = _dataset(root, {"train": {"t.jpg": BOX, "u.jpg": BOX}, "val": {"v.jpg": None, "w.jpg": None}})
    errors = _errors(yaml)
    assert len(errors) == 1 and errors[0]["file"] == str(root / "labels/val")
    text = errors[0]["problem"]
    assert f"looked in '{root / 'labels/val'}', which does not exist" in text and "allow_empty=True" in text
    assert _train_refusal(DetectTask(), yaml, "val") == text
    assert _train_refusal(DetectTask(), yaml, "train") is None
    # label files that exist but are all empty: the same rule, another reason
    (root / "labels/val").mkdir()
    for stem in ("v", "w"):
        (root / f"labels/val/{stem}.txt").write_text("")
    text = _errors(yaml)[0]["problem"]
    assert "whose 2 label file(s) hold no rows" in text and _train_refusal(DetectTask(), yaml, "val") == text
    # background images on purpose: one explicit key in check and in training
    assert _errors(yaml, allow_empty=True) == []
    assert _train_refusal(DetectTask(), yaml, "val", allow_empty=True) is None


def test_background_images_among_labelled_ones_stay_backgrounds_and_are_counted(tmp_path):
    yaml = _dataset(tmp_path / "ds", {"train": {"a.jpg": BOX, "b.jpg": None, "c.jpg": ""}, "val": {"v.jpg": BOX}})
    result = check_dataset(yaml, verbose=False)
    assert result["errors"] == 0 and result["rules"] == ["detect"]
    assert result["counts"]["background images (no label file)"] == 1
    assert result["counts"]["background images (empty label file)"] == 1
    task = DetectTask()
    args = resolve({"data": str(yaml)}, task.keys)
    ds = task.build_dataset(task.resolve_data(args), "train", 64, False, args)
    assert sorted(len(lab) for lab in ds.labels) == [0, 0, 1]


def test_a_box_under_a_pixel_is_no_object_for_check_as_for_training(tmp_path):
    tiny = "0 0.5 0.5 0.01 0.01\n"  # 0.48 × 0.32 px on a 48 × 32 image: training drops it
    yaml = _dataset(tmp_path / "ds", {"train": {"t.jpg": BOX}, "val": {"v.jpg": tiny}})
    text = _errors(yaml)[0]["problem"]
    assert "none of its 1 images has a labelled object" in text
    assert _train_refusal(DetectTask(), yaml, "val") == text


def test_images_sharing_a_stem_are_refused_for_labels_masks_and_depth(tmp_path):
    # detection: a.jpg and a.png would both read labels/train/a.txt
    yaml = _dataset(tmp_path / "det", {"train": {"a.jpg": BOX, "a.png": BOX, "b.jpg": BOX}, "val": {"v.jpg": BOX}})
    text = _errors(yaml)[0]["problem"]
    assert "2 images share their annotation files" in text and "a.jpg, a.png" in text
    assert _train_refusal(DetectTask(), yaml) == text
    # segmentation masks
    root = tmp_path / "seg"
    for split, stems in (("train", ("a.jpg", "a.png", "b.jpg")), ("val", ("v.jpg",))):
        for name in stems:
            _image(root / "images" / split / name)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "masks" / split / (name.rsplit(".", 1)[0] + ".png")), np.ones((32, 48), np.uint8))
    write_data_yaml(root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "names": ["x"]})
    errors = _errors(root / "data.yaml")
    assert len(errors) == 1 and "a.jpg, a.png" in errors[0]["problem"]
    assert _train_refusal(SegmentTask(), root / "data.yaml") == errors[0]["problem"]
    # depth maps, and one depth map stored both as .png and .npy
    root = tmp_path / "depth"
    for split, stems in (("train", ("a.jpg", "a.png", "b.jpg")), ("val", ("v.jpg",))):
        for name in stems:
            _image(root / "images" / split / name)
            (root / "depth" / split).mkdir(parents=True, exist_ok=True)
            np.save(root / "depth" / split / (name.rsplit(".", 1)[0] + ".npy"), np.ones((32, 48), np.float32))
    cv2.imwrite(str(root / "depth/train/b.png"), np.full((32, 48), 1000, np.uint16))
    write_data_yaml(
        root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "depth_scale": 1000}
    )
    errors = [e["problem"] for e in _errors(root / "data.yaml")]
    assert len(errors) == 2 and "a.jpg, a.png" in errors[0] and "both as .png and .npy" in errors[1]
    refusal = _train_refusal(DepthTask(), root / "data.yaml")
    assert refusal == "\n".join(["dataset refused:", *errors])


def test_the_label_studio_importer_renames_images_whose_stems_collide(tmp_path):
    images = tmp_path / "imgs"
    _image(images / "img0.jpg", value=30)
    _image(images / "img0.png", value=200)
    box = {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["a"]}
    tasks = [
        {
            "id": tid,
            "data": {"image": name},
            "annotations": [{"id": tid, "result": [{"type": "rectanglelabels", "from_name": "b", "value": v}]}],
        }
        for tid, name, v in ((1, "img0.jpg", box), (2, "img0.png", {**box, "x": 50}))
    ]
    report = import_labelstudio(tasks, tmp_path / "out", images_dir=images, val=0.0, verbose=False)
    assert report["renamed"] == [
        {"task": 1, "image": "img0.jpg", "written_as": "img0_t1.jpg"},
        {"task": 2, "image": "img0.png", "written_as": "img0_t2.png"},
    ]
    assert any("2 image(s) renamed" in n for n in report["notes"])
    root = tmp_path / "out"
    assert sorted(p.name for p in (root / "images/train").iterdir()) == ["img0_t1.jpg", "img0_t2.png"]
    for stem, x in (("img0_t1", 10), ("img0_t2", 50)):  # each image kept its own box
        ((cls, (cx, _, w, _)),) = read_label_file(root / f"labels/train/{stem}.txt")
        assert cx == pytest.approx((x + 15) / 100, abs=1e-5)
    assert _errors(root / "data.yaml") == []


def test_the_coco_importer_renames_images_whose_stems_collide(tmp_path):
    images = tmp_path / "imgs"
    _image(images / "img0.jpg", value=30)
    _image(images / "img0.png", value=200)
    coco = {
        "images": [
            {"id": 1, "file_name": "img0.jpg", "width": 48, "height": 32},
            {"id": 2, "file_name": "img0.png", "width": 48, "height": 32},
        ],
        "annotations": [
            {"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [4 * i, 4, 8, 8], "area": 64, "iscrowd": 0}
            for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    src = tmp_path / "instances.json"
    src.write_text(json.dumps(coco))
    report = import_coco(src, images, tmp_path / "out", val=0.0, verbose=False)
    assert report["renamed"] == [{"image": "img0.png", "id": 2, "written_as": "img0_2.png"}]
    root = tmp_path / "out"
    assert sorted(p.name for p in (root / "images/train").iterdir()) == ["img0.jpg", "img0_2.png"]
    for stem, x in (("img0", 4), ("img0_2", 8)):
        ((_, (cx, *_)),) = read_label_file(root / f"labels/train/{stem}.txt")
        assert cx == pytest.approx((x + 4) / 48, abs=1e-5)
    assert _errors(root / "data.yaml") == []


def test_label_studio_parts_of_the_wrong_type_are_reported_with_their_path_and_skipped(tmp_path):
    images = tmp_path / "imgs"
    _image(images / "img.png")
    region = {"type": "rectanglelabels", "from_name": "b", "value": {"x": 10, "y": 10, "width": 20, "height": 20}}
    region["value"]["rectanglelabels"] = ["a"]
    good = {"id": 7, "result": [region]}
    tasks = [
        5,
        {"id": 1, "data": {"image": "img.png"}, "annotations": [1, "x", None, good]},
        {"id": 2, "data": "img.png", "annotations": [good]},
        {"id": [3], "data": {"image": "img.png"}},
        {"id": 4, "data": {"image": "img.png"}, "annotations": "oops"},
        {"id": 5, "data": {"image": 5}, "annotations": [good]},
        {"id": 6, "data": {"image": "img.png"}, "annotations": [{"id": 8, "result": 5}, {"id": [1]}], "predictions": 3},
        {"id": "", "data": {"image": "img.png"}, "annotations": [{**good, "updated_at": 12, "id": 9}]},
    ]
    report = import_labelstudio(tasks, tmp_path / "out", images_dir=images, val=0.0, verbose=False, background=True)
    assert [(m["path"], m["task"]) for m in report["malformed"]] == [
        ("tasks[0]", None),
        ("tasks[1].annotations[0]", 1),
        ("tasks[1].annotations[1]", 1),
        ("tasks[1].annotations[2]", 1),
        ("tasks[2].data", 2),
        ("tasks[3].id", None),
        ("tasks[4].annotations", 4),
        ("tasks[5].data.image", 5),
        ("tasks[6].annotations[0]", 6),
        ("tasks[6].annotations[1]", 6),
        ("tasks[6].predictions", 6),
        ("tasks[7].annotations[0]", ""),
    ]
    assert report["malformed"][1]["reason"] == "is a number, not an object"
    assert report["malformed"][8]["reason"] == "result is a number, not a list of regions"
    assert report["images_written"] == 3  # tasks 1 (its good annotation), 6 and "" (backgrounds) kept
    assert report["regions"]["written"] == 1
    assert any("12 part(s) of the export have the wrong type" in n for n in report["notes"])


def test_an_export_with_nothing_sensible_is_one_clear_error(tmp_path):
    src = tmp_path / "export.json"
    src.write_text(json.dumps([1, "x", None]))
    with pytest.raises(DataError, match="none of its 3 items is a task"):
        load_export(src)
    with pytest.raises(DataError, match=r"nothing to import.*tasks\[0\] \(task None\) is a number, not an object"):
        import_labelstudio([1, {"id": 2, "annotations": [None]}], tmp_path / "out", val=0.0, verbose=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="not a Label Studio export"):
        import_labelstudio("tasks", tmp_path / "out", val=0.0, verbose=False)


def test_a_depth_scale_that_is_no_positive_number_is_refused_when_read(tmp_path):
    for bad in ("mm", 0, -1, True):
        path = tmp_path / "data.yaml"
        write_data_yaml(path, {"path": ".", "train": "images/train", "depth_scale": bad})
        with pytest.raises(DataError, match="depth_scale must be a positive number"):
            load_data_yaml(path)


def test_a_split_a_dense_task_cannot_use_is_an_error_in_check_as_in_training(tmp_path):
    # box rows only: no mask, no polygon (a box is not a mask), no depth map
    yaml = _dataset(tmp_path / "ds", {"train": {"t.jpg": BOX}, "val": {"v.jpg": BOX}})
    for task in (SegmentTask(), DepthTask()):
        errors = _errors(yaml, task=task.name)
        assert {e["problem"].split("'")[3] for e in errors} == {"train", "val"}
        assert all("images is usable" in e["problem"] for e in errors)
        assert _train_refusal(task, yaml) is not None
    polygon = "0 0.1 0.1 0.9 0.1 0.5 0.9\n"
    ok = _dataset(tmp_path / "ok", {"train": {"t.jpg": polygon}, "val": {"v.jpg": ""}})
    assert _errors(ok, task="segment") == [] and _train_refusal(SegmentTask(), ok) is None


def test_a_split_list_that_is_not_text_is_a_clear_error_in_check_and_training(tmp_path):
    yaml = _dataset(tmp_path / "ds", {"train": {"t.jpg": BOX}, "val": {"v.jpg": BOX}})
    (tmp_path / "ds/val.txt").write_bytes(b"\xff\xfe\x00images/val/v.jpg")
    spec = {"path": ".", "train": "images/train", "val": "val.txt", "names": ["a"]}
    write_data_yaml(yaml, spec)
    errors = _errors(yaml)
    assert len(errors) == 1 and "is not readable UTF-8 text" in errors[0]["problem"]
    assert _train_refusal(DetectTask(), yaml, "val") == errors[0]["problem"]

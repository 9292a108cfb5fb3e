"""Datasets in Roboflow's export layouts load unchanged: a YOLO data.yaml beside train/, valid/ and test/ that says
``train: ../train/images``, and a classification folder whose validation split is valid/. ``nc`` must agree with
``names``."""

import json

import cv2
import numpy as np
import pytest

from visionkit.cfg import resolve
from visionkit.data.check import check_dataset
from visionkit.data.coco import import_coco
from visionkit.data.format import load_data_yaml, read_label_file, sidecar_path, split_images
from visionkit.errors import DataError, UsageError
from visionkit.tasks.classify.task import ClassifyTask
from visionkit.tasks.detect.task import DetectTask

ROBOFLOW_YAML = """train: ../train/images
val: ../valid/images
test: ../test/images

nc: 2
names: ['cat', 'dog']

roboflow:
  workspace: someone
  project: pets
  version: 3
  license: CC BY 4.0
"""


def _image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((24, 40, 3), value, np.uint8)
    img[4:16, 6:20] = 255 - value
    assert cv2.imwrite(str(path), img)


def _roboflow_yolo(root, counts=None):
    counts = counts or {"train": 3, "valid": 2, "test": 1}
    for split, n in counts.items():
        for i in range(n):
            _image(root / split / "images" / f"{split}{i}.jpg", 40 + 30 * i)
            label = root / split / "labels" / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{i % 2} 0.325 0.4167 0.35 0.5\n")
    (root / "data.yaml").write_text(ROBOFLOW_YAML)
    return root / "data.yaml"


def test_a_roboflow_yolo_export_loads_checks_and_builds(tmp_path):
    yaml = _roboflow_yolo(tmp_path / "pets")
    spec = load_data_yaml(yaml)
    assert [p.name for p in split_images(spec, "train")] == ["train0.jpg", "train1.jpg", "train2.jpg"]
    assert [p.parent.parent.name for p in split_images(spec, "val")] == ["valid", "valid"]
    report = check_dataset(yaml, verbose=False)
    assert report["errors"] == 0, report["problems"]
    assert report["counts"]["train images"] == 3 and report["counts"]["val images"] == 2
    args = resolve({"data": str(yaml)}, DetectTask.keys)
    data = DetectTask().resolve_data(args)
    assert data.names == ["cat", "dog"]
    assert len(DetectTask().build_dataset(data, "val", 64, False, args)) == 2


def test_an_explicit_path_is_taken_as_written(tmp_path):
    """With ``path:`` the YAML says where the splits are: ../ is not second-guessed, and the error names the folder."""
    yaml = _roboflow_yolo(tmp_path / "pets")
    yaml.write_text("path: .\n" + ROBOFLOW_YAML)
    spec = load_data_yaml(yaml)
    assert spec["train"] == "../train/images"
    with pytest.raises(DataError, match="train/images', which is neither a folder"):
        split_images(spec, "train")


def test_a_split_that_exists_one_folder_up_stays_there(tmp_path):
    """``../shared/images`` that really exists above the YAML's folder is used as written."""
    _image(tmp_path / "shared" / "images" / "a.jpg", 50)
    (tmp_path / "ds").mkdir()
    _image(tmp_path / "ds" / "shared" / "images" / "b.jpg", 90)  # a decoy where the ../-stripped path would point
    (tmp_path / "ds" / "data.yaml").write_text("train: ../shared/images\nnames: [a]\n")
    assert [p.name for p in split_images(load_data_yaml(tmp_path / "ds" / "data.yaml"), "train")] == ["a.jpg"]


@pytest.mark.parametrize(
    "nc, message",
    [("3", "nc: 3 but names lists 2 class"), ("two", "nc must be the number of classes"), ("0", "nc must be")],
)
def test_nc_must_agree_with_names(tmp_path, nc, message):
    yaml = _roboflow_yolo(tmp_path / "pets")
    yaml.write_text(ROBOFLOW_YAML.replace("nc: 2", f"nc: {nc}"))
    with pytest.raises(DataError, match=message) as e:
        load_data_yaml(yaml)
    assert str(yaml) in str(e.value)


def test_a_classification_folder_with_valid_split(tmp_path):
    root = tmp_path / "flowers"
    for split, n in (("train", 2), ("valid", 3)):
        for cls in ("daisy", "rose"):
            for i in range(n):
                _image(root / split / cls / f"{i}.jpg", 30 + 40 * i)
    args = resolve({"data": str(root)}, ClassifyTask.keys)
    task = ClassifyTask()
    data = task.resolve_data(args)
    assert data.names == ["daisy", "rose"]
    assert len(task.build_dataset(data, "val", 32, False, args)) == 6
    assert len(task.build_dataset(data, "train", 32, True, args)) == 4


def _roboflow_coco(root):
    """Roboflow's COCO export: train/ and valid/, each with its images and _annotations.coco.json; category 0 is
    the project (labels nothing, the others' supercategory)."""
    categories = [
        {"id": 0, "name": "pets", "supercategory": "none"},
        {"id": 1, "name": "cat", "supercategory": "pets"},
        {"id": 2, "name": "dog", "supercategory": "pets"},
    ]
    for split, n in (("train", 3), ("valid", 2)):
        images, annotations = [], []
        for i in range(n):
            _image(root / split / f"{split}{i}_jpg.rf.abc.jpg", 40 + 30 * i)
            images.append({"id": i, "file_name": f"{split}{i}_jpg.rf.abc.jpg", "width": 40, "height": 24})
            annotations.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": 1 + i % 2,
                    "bbox": [6, 4, 14, 12],
                    "area": 168,
                    "iscrowd": 0,
                    "segmentation": [],
                }  # fmt: skip
            )
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (root / split / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


def test_a_roboflow_coco_export_imports_from_its_folder(tmp_path, capsys):
    src = _roboflow_coco(tmp_path / "export")
    report = import_coco(str(src), None, tmp_path / "ds", verbose=True)
    assert report["names"] == ["cat", "dog"]  # the project category is not a class
    assert report["categories_left_out"] == [
        {"id": 0, "name": "pets", "reason": "labels nothing and is the supercategory of other categories"}
    ]
    assert report["splits"] == {"train": 3, "val": 2} and report["skipped"] == []
    assert "category 0 'pets' left out of names" in capsys.readouterr().out
    spec = load_data_yaml(tmp_path / "ds" / "data.yaml")
    rows = [read_label_file(sidecar_path(p)) for p in split_images(spec, "train")]
    assert [r[0][0] for r in rows] == [0, 1, 0]  # cat, dog, cat: ids shifted past the left-out category
    assert rows[0][0][1] == pytest.approx([13 / 40, 10 / 24, 14 / 40, 12 / 24], abs=1e-5)  # 6 decimals


def test_a_used_or_childless_category_is_never_left_out(tmp_path):
    """COCO's own layout (person's supercategory is person) keeps every category that labels something or is
    nobody's parent; only an unused parent of others is left out."""
    src = _roboflow_coco(tmp_path / "export")
    for split in ("train", "valid"):
        path = src / split / "_annotations.coco.json"
        coco = json.loads(path.read_text())
        coco["categories"] = [
            {"id": 1, "name": "cat", "supercategory": "cat"},
            {"id": 2, "name": "dog", "supercategory": "animal"},
            {"id": 3, "name": "animal", "supercategory": "animal"},  # unused and dog's parent: left out
            {"id": 4, "name": "bird", "supercategory": "bird"},  # unused and nobody's parent: a class, kept
        ]
        path.write_text(json.dumps(coco))
    report = import_coco(src, None, tmp_path / "ds", verbose=False)
    assert report["names"] == ["cat", "dog", "bird"]
    assert [c["name"] for c in report["categories_left_out"]] == ["animal"]


def test_coco_files_without_a_split_word_anywhere_are_refused(tmp_path):
    src = _roboflow_coco(tmp_path / "export")
    (src / "valid").rename(src / "second")
    with pytest.raises(UsageError, match="name or folder must contain train, val or test: .*second"):
        import_coco(src, None, tmp_path / "ds", verbose=False)
    assert not (tmp_path / "ds").exists()

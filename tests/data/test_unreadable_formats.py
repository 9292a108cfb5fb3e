"""Pictures in formats visionkit cannot read (HEIC from iPhones, AVIF, camera raw) are reported by `data check`
and by training, with how to convert them, instead of being passed over like any other non-image file."""

import cv2
import numpy as np
import pytest

from visionkit.cfg import resolve
from visionkit.data.check import check_dataset
from visionkit.data.datasets import ImageFolderDataset
from visionkit.data.format import write_data_yaml
from visionkit.engine.predictor import resolve_sources
from visionkit.errors import DataError
from visionkit.tasks.detect.task import DetectTask


def _dataset(root):
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name in ("a", "b"):
            assert cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), np.full((32, 48, 3), 90, np.uint8))
            (root / "labels" / split / f"{name}.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "images/train/IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "images/train/DSC_7.nef").write_bytes(b"raw")
    (root / "images/train/notes.txt").write_text("not a picture: not reported")
    write_data_yaml(root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "names": ["x"]})
    return root / "data.yaml"


def test_data_check_warns_about_each_unreadable_picture(tmp_path):
    report = check_dataset(_dataset(tmp_path / "d"), verbose=False)
    warnings = [p["problem"] for p in report["problems"] if p["severity"] == "warning"]
    assert report["errors"] == 0 and len(warnings) == 1, report["problems"]
    text = warnings[0]
    assert "split 'train': 2 picture(s)" in text and "IMG_0001.HEIC" in text and "DSC_7.nef" in text
    assert "HEIC/HEIF (iPhone photos)" in text and "camera raw" in text and "Convert them to JPEG" in text
    assert "notes.txt" not in text


def test_training_warns_and_goes_on_with_the_readable_images(tmp_path):
    yaml = _dataset(tmp_path / "d")
    task = DetectTask()
    args = resolve({"data": str(yaml)}, task.keys)
    with pytest.warns(UserWarning, match=r"2 picture\(s\) in a format visionkit cannot read"):
        ds = task.build_dataset(task.resolve_data(args), "train", 64, True, args)
    assert len(ds) == 2


def test_a_classification_folder_warns_too(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        assert cv2.imwrite(str(tmp_path / cls / "0.jpg"), np.full((16, 16, 3), 50, np.uint8))
    (tmp_path / "dog" / "IMG_2.heif").write_bytes(b"heif")
    with pytest.warns(UserWarning, match=r"1 picture\(s\) .*IMG_2.heif"):
        ds = ImageFolderDataset(tmp_path)
    assert len(ds) == 2


def test_predict_sources_report_them(tmp_path):
    assert cv2.imwrite(str(tmp_path / "a.jpg"), np.full((16, 16, 3), 50, np.uint8))
    (tmp_path / "IMG_3.heic").write_bytes(b"heic")
    (tmp_path / "clip.txt").write_text("ignored")
    with pytest.warns(UserWarning, match=r"source '.*': 1 picture\(s\) .*IMG_3.heic"):
        assert resolve_sources(str(tmp_path)) == [tmp_path / "a.jpg"]
    with pytest.warns(UserWarning, match="IMG_3.heic"):
        assert resolve_sources(str(tmp_path / "*")) == [tmp_path / "a.jpg"]
    with pytest.raises(DataError, match=r"IMG_3.heic.*Convert them to JPEG or PNG"):
        resolve_sources(str(tmp_path / "IMG_3.heic"))

import json
import shutil

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tests.conftest import run_cli
from visionkit.data.coco import export_coco, import_coco
from visionkit.data.commands import check, stats
from visionkit.data.format import (
    load_data_yaml,
    read_label_file,
    row_to_box,
    sidecar_path,
    split_images,
    write_data_yaml,
    write_label_file,
)


def _boxes(root, split):
    spec = load_data_yaml(root / "data.yaml")
    return {
        f.name: [(c, row_to_box(xy)) for c, xy in read_label_file(sidecar_path(f))] for f in split_images(spec, split)
    }


def _box_dataset(root):
    """A tiny detection dataset with box rows only (not polygons)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / "images" / split / f"{split}{i}.png"), np.zeros((30 + i, 50, 3), np.uint8))
            rows = []
            for _ in range(2):
                cx, cy = rng.uniform(0.3, 0.7, 2)
                rows.append((int(rng.integers(3)), [cx, cy, rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)]))
            write_label_file(root / "labels" / split / f"{split}{i}.txt", rows)
    write_data_yaml(
        root / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val", "names": ["a", "b", "c"]}
    )
    return root


@pytest.mark.parametrize("kind", ["boxes", "polygons"])
def test_yolo_coco_yolo_round_trip_keeps_every_box(tmp_path, shapes_root, kind):
    src = _box_dataset(tmp_path / "src") if kind == "boxes" else shapes_root
    files = export_coco(src / "data.yaml", tmp_path / "coco", verbose=False)
    assert [f.name for f in files] == ["instances_train.json", "instances_val.json"]
    coco = COCO(str(files[0]))  # pycocotools reads what we wrote
    assert len(coco.getAnnIds()) == sum(len(v) for v in _boxes(src, "train").values())
    import_coco([str(f) for f in files], src / "images/train", tmp_path / "back", verbose=False)
    # the val images sit in another folder: import that split on its own and compare both
    import_coco(str(files[1]), src / "images/val", tmp_path / "back_val", val=1.0, verbose=False)
    for split, back in (("train", tmp_path / "back"), ("val", tmp_path / "back_val")):
        orig, new = _boxes(src, split), _boxes(back, split)
        assert orig.keys() == new.keys()
        for name in orig:
            assert [c for c, _ in orig[name]] == [c for c, _ in new[name]]
            for (_, a), (_, b) in zip(orig[name], new[name]):
                assert np.allclose(a, b, atol=1e-6), (name, a, b)


def test_coco_rle_masks_and_crowd_regions(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "x.png"), np.zeros((40, 60, 3), np.uint8))
    m = np.zeros((40, 60), np.uint8, order="F")
    m[5:20, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    coco = {
        "images": [{"id": 1, "file_name": "x.png", "width": 60, "height": 40}],
        "categories": [{"id": 7, "name": "blob"}, {"id": 3, "name": "thing"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                "bbox": [10, 5, 20, 15],
                "segmentation": rle,
                "area": 300,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "bbox": [0, 0, 10, 10],
                "segmentation": [],
                "area": 100,
                "iscrowd": 1,
            },
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    report = import_coco(str(tmp_path / "c.json"), images, tmp_path / "out", val=0.0, verbose=False)
    assert report["names"] == ["thing", "blob"]  # ordered by category id
    assert report["skipped"] == [{"annotation": 2, "reason": "crowd region (iscrowd=1)"}]
    mask = cv2.imread(str(tmp_path / "out/masks/train/x.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask == 2, m.astype(bool))  # blob = class 1 → mask value 2
    ((cls, row),) = read_label_file(tmp_path / "out/labels/train/x.txt")
    assert cls == 1 and np.allclose(row, [20 / 60, 12.5 / 40, 20 / 60, 15 / 40])


def test_check_finds_every_kind_of_problem(tmp_path, shapes_root):
    assert check(data=str(shapes_root / "data.yaml"), verbose=False)["errors"] == 0
    root = tmp_path / "bad"
    shutil.copytree(shapes_root, root, ignore=shutil.ignore_patterns("classify"))
    (root / "labels/train/00000.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    (root / "labels/train/00001.txt").write_text("0 0.5 0.5 1.7 0.1\n")
    (root / "images/train/00002.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(root / "masks/train/00003.png"), np.full((10, 10), 9, np.uint8))
    cv2.imwrite(str(root / "depth/train/00004.png"), np.zeros((48, 48), np.uint16))
    result = check(data=str(root / "data.yaml"), verbose=False)
    text = "\n".join(f"{p['file']}: {p['problem']}" for p in result["problems"])
    assert "00000.txt:1: class id 7 is outside 0..3" in text
    assert "00001.txt" in text and "outside 0..1" in text
    assert "00002.jpg: image does not decode" in text
    assert "00003.png: mask is 10×10 but the image is 48×48" in text and "mask values [9]" in text
    assert "00004.png: depth map has no valid pixels" in text
    assert result["errors"] == 6 and result["counts"]["corrupt images"] == 1
    r = run_cli("data", "check", f"data={root / 'data.yaml'}")
    assert r.returncode == 1 and "6 error(s)" in r.stdout


def test_stats_counts_and_mosaic(tmp_path, shapes_root):
    result = stats(data=str(shapes_root / "data.yaml"), out=str(tmp_path / "st"), samples=4, verbose=False)
    expected = sum(len(read_label_file(p)) for p in (shapes_root / "labels/train").glob("*.txt"))
    assert sum(result["instances"]["train"].values()) == expected
    assert result["images"] == {"train": 16, "val": 8}
    mosaic = cv2.imread(result["mosaic"])
    assert mosaic.shape == (512, 512, 3) and mosaic.std() > 10
    assert (tmp_path / "st/box_sizes.png").is_file()

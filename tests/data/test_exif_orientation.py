"""Phone photos store pixels sideways with an EXIF orientation tag. cv2.imread, browsers and Label Studio show
them turned, so labels refer to the displayed image: every size visionkit reads must be the displayed one."""

import json

import cv2
import numpy as np
import torch
from PIL import Image

from visionkit.cfg import resolve
from visionkit.data.check import check_dataset
from visionkit.data.coco import export_coco
from visionkit.data.format import image_size, write_data_yaml
from visionkit.tasks.detect.dataset import DetectionDataset
from visionkit.tasks.detect.task import DetectTask

DISPLAYED_W, DISPLAYED_H = 80, 48
BOX = (50, 10, 70, 30)  # x1, y1, x2, y2 of a white square in the displayed image


def sideways_jpeg(path):
    """Displayed 80×48 with a white square at BOX, stored 48×80 with EXIF orientation 6 (turn 90° clockwise)."""
    shown = np.zeros((DISPLAYED_H, DISPLAYED_W, 3), np.uint8)
    x1, y1, x2, y2 = BOX
    shown[y1:y2, x1:x2] = 255
    stored = np.ascontiguousarray(np.rot90(shown, k=1))  # 90° counter-clockwise: the display turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


def test_sizes_and_decoding_follow_the_exif_orientation(tmp_path):
    path = sideways_jpeg(tmp_path / "phone.jpg")
    with Image.open(path) as im:
        assert im.size == (DISPLAYED_H, DISPLAYED_W)  # stored sideways
    assert image_size(path) == (DISPLAYED_W, DISPLAYED_H)
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape[:2] == (DISPLAYED_H, DISPLAYED_W)  # cv2 turns it too


def test_detection_boxes_land_on_the_object_of_a_sideways_photo(tmp_path):
    root = tmp_path / "ds"
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    path = sideways_jpeg(root / "images/val/phone.jpg")
    x1, y1, x2, y2 = BOX
    cx, cy = (x1 + x2) / 2 / DISPLAYED_W, (y1 + y2) / 2 / DISPLAYED_H
    w, h = (x2 - x1) / DISPLAYED_W, (y2 - y1) / DISPLAYED_H
    (root / "labels/val/phone.txt").write_text(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    write_data_yaml(
        root / "data.yaml", {"path": ".", "train": "images/val", "val": "images/val", "names": {0: "square"}}
    )

    ds = DetectionDataset([path], ["square"], 64, False, resolve({}), cache_dir=root / "labels/val", verbose=False)
    img, targets, meta = ds[0]
    assert meta["shape"] == (DISPLAYED_H, DISPLAYED_W)
    s = 64
    t = targets[0]
    bx1, by1 = int((t[1] - t[3] / 2) * s) + 1, int((t[2] - t[4] / 2) * s) + 1
    bx2, by2 = int((t[1] + t[3] / 2) * s) - 1, int((t[2] + t[4] / 2) * s) - 1
    assert img[:, by1:by2, bx1:bx2].float().mean() > 200  # the box covers the white square
    xyxy = torch.tensor([[(t[1] - t[3] / 2) * s, (t[2] - t[4] / 2) * s, (t[1] + t[3] / 2) * s, (t[2] + t[4] / 2) * s]])
    back = DetectTask._to_original(xyxy, torch.ones(1), torch.zeros(1), meta)["boxes"][0]
    assert np.allclose(back, BOX, atol=0.5)

    assert not check_dataset(root / "data.yaml", verbose=False)["errors"]
    coco = json.loads(export_coco(root / "data.yaml", tmp_path / "coco", verbose=False)[0].read_text())
    image = coco["images"][0]
    assert (image["width"], image["height"]) == (DISPLAYED_W, DISPLAYED_H)
    assert np.allclose(coco["annotations"][0]["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.01)


def test_labelstudio_masks_have_the_displayed_size(tmp_path):
    from visionkit.data.labelstudio import import_labelstudio

    images = tmp_path / "media"
    images.mkdir()
    sideways_jpeg(images / "phone.jpg")
    x1, y1, x2, y2 = BOX
    points = [
        [x1 / DISPLAYED_W * 100, y1 / DISPLAYED_H * 100],
        [x2 / DISPLAYED_W * 100, y1 / DISPLAYED_H * 100],
        [x2 / DISPLAYED_W * 100, y2 / DISPLAYED_H * 100],
        [x1 / DISPLAYED_W * 100, y2 / DISPLAYED_H * 100],
    ]
    region = {
        "id": "p",
        "from_name": "label",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": DISPLAYED_W,
        "original_height": DISPLAYED_H,
        "image_rotation": 0,
        "value": {"points": points, "closed": True, "polygonlabels": ["square"]},
    }
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/0a1b2c3d-phone.jpg"},
            "predictions": [],
            "annotations": [
                {
                    "id": 2,
                    "result": [region],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2026-01-01",
                    "updated_at": "2026-01-01",
                }
            ],
        }
    ]
    config = (
        '<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
        '<Label value="square"/></PolygonLabels></View>'
    )
    import_labelstudio(tasks, tmp_path / "out", images_dir=images, config_xml=config, val=0.0, verbose=False)
    mask = cv2.imread(str(tmp_path / "out/masks/train/phone.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (DISPLAYED_H, DISPLAYED_W)
    assert mask[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].min() == 1 and mask[:, : x1 - 2].max() == 0
    photo = cv2.imread(str(tmp_path / "out/images/train/phone.jpg"), cv2.IMREAD_COLOR)
    assert photo[mask == 1].mean() > 200  # the mask lies on the square in the image as decoded

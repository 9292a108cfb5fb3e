"""Objects with exact masks through the importers and the COCO export: a Label Studio brush region is one object
(a box row + its pixels in instances/), COCO RLE / multi-part polygons / crowd regions survive import → export with
the same RLE counts and areas."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import FIXTURES
from visionkit.data.coco import export_coco, import_coco
from visionkit.data.format import read_label_file, row_to_box
from visionkit.data.instances import decode, encode_mask, mask_box_row, read_instances
from visionkit.data.labelstudio import import_labelstudio
from visionkit.data.labelstudio.rle import decode_brush_mask, encode_brush_mask
from visionkit.data.labelstudio.sources import load_export

LS = FIXTURES / "labelstudio"
CONFIGS = json.loads((LS / "label_configs.json").read_text())


def _accounting(report):
    r = report["regions"]
    assert r["written"] + r["skipped"] == r["in_export"] and r["skipped"] == len(report["skipped_regions"])


def _rows_and_masks(root, split, stem):
    rows = read_label_file(root / "labels" / split / f"{stem}.txt")
    inst = read_instances(root / "instances" / split / f"{stem}.json")
    return rows, inst


# --- Label Studio --------------------------------------------------------------------------------------------------
def test_real_brush_export_gives_one_object_per_region(tmp_path):
    tasks, _ = load_export(LS / "brush_JSON.json")  # a real Label Studio 1.23 export: sky and ground brushes
    rep = import_labelstudio(
        tasks, tmp_path / "b", images_dir=LS / "images", config_xml=CONFIGS["brush"], val=0.0, verbose=False
    )
    _accounting(rep)
    assert rep["regions"] == {"in_export": 2, "written": 2, "skipped": 0}
    rows, inst = _rows_and_masks(tmp_path / "b", "train", "img5")
    results = tasks[0]["annotations"][0]["result"]
    assert [c for c, _ in rows] == [0, 1] and (inst.height, inst.width) == (200, 320)
    assert sorted(inst.objects) == [1, 2] and inst.crowd == []
    for line, r in enumerate(results, 1):
        want = decode_brush_mask(r["value"]["rle"], r["original_height"], r["original_width"]) >= 128
        got = decode(inst.objects[line], 200, 320)
        assert np.array_equal(got, want)  # each object holds all its pixels, overlaps included
        assert rows[line - 1][1] == pytest.approx(mask_box_row(want), abs=1e-6)
    assert np.array_equal(decode(inst.objects[1], 200, 320), np.load(LS / "brush_mask_sky.npy") >= 128)
    # the semantic mask is as before: the later region wins where they overlap
    sem = cv2.imread(str(tmp_path / "b/masks/train/img5.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(sem == 2, decode(inst.objects[2], 200, 320))


def _brush(rid, label, mask, h, w):
    return {
        "id": rid,
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush_mask(mask), "brushlabels": [label]},
    }


def test_touching_brushes_stay_two_objects_and_empty_ones_are_reported(tmp_path):
    h, w = 12, 16
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((h, w, 3), np.uint8))
    left = np.zeros((h, w), bool)
    left[2:10, 1:8] = True
    left[4:6, 3:5] = False  # a hole
    right = np.zeros((h, w), bool)
    right[2:10, 8:14] = True  # touches `left` along x = 8
    pieces = np.zeros((h, w), bool)
    pieces[0, 0:2] = pieces[11, 14:16] = True  # one region in two pieces: one object
    poly = {
        "id": "p",
        "from_name": "poly",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": w,
        "original_height": h,
        "value": {"points": [[50, 50], [90, 50], [90, 90]], "polygonlabels": ["sky"]},
    }
    result = [
        _brush("l", "sky", left, h, w),
        poly,
        _brush("r", "ground", right, h, w),
        _brush("e", "ground", np.zeros((h, w), bool), h, w),
        _brush("s", "sky", pieces, h, w),
    ]
    tasks = [{"id": 1, "data": {"image": "/data/upload/1/a.png"}, "annotations": [{"id": 9, "result": result}]}]
    rep = import_labelstudio(tasks, tmp_path / "o", images_dir=images, names=["sky", "ground"], val=0.0, verbose=False)
    _accounting(rep)
    assert rep["regions"] == {"in_export": 5, "written": 4, "skipped": 1}
    assert rep["skipped_regions"][0]["region"] == "e" and "empty" in rep["skipped_regions"][0]["reason"]
    rows, inst = _rows_and_masks(tmp_path / "o", "train", "a")
    assert [c for c, _ in rows] == [0, 0, 1, 0]
    assert len(rows[1][1]) == 6  # the polygon stays a polygon row, without an entry
    assert sorted(inst.objects) == [1, 3, 4]
    for line, m in ((1, left), (3, right), (4, pieces)):
        assert np.array_equal(decode(inst.objects[line], h, w), m)
        assert rows[line - 1][1] == pytest.approx(mask_box_row(m), abs=1e-6)
    assert rows[3][1] == pytest.approx([0.5, 0.5, 1.0, 1.0], abs=1e-6)  # the box of both pieces
    manifest = json.loads((tmp_path / "o/.visionkit-manifest.json").read_text())
    assert "instances/train/a.json" in manifest["files"]


def test_brush_drawn_at_another_size_is_resized_nearest(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((20, 40, 3), np.uint8))
    small = np.zeros((10, 20), bool)
    small[2:7, 3:9] = True
    tasks = [
        {
            "id": 1,
            "data": {"image": "a.png"},
            "annotations": [{"id": 1, "result": [_brush("x", "sky", small, 10, 20)]}],
        }
    ]
    import_labelstudio(tasks, tmp_path / "o", images_dir=images, names=["sky"], val=0.0, verbose=False)
    _, inst = _rows_and_masks(tmp_path / "o", "train", "a")
    want = cv2.resize(small.astype(np.uint8), (40, 20), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert (inst.height, inst.width) == (20, 40) and np.array_equal(decode(inst.objects[1], 20, 40), want)


# --- COCO ----------------------------------------------------------------------------------------------------------
def rle_bytes(counts, h=24, w=32):
    return {"size": [h, w], "counts": counts.encode()}


def _compressed(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode()}


def _coco_fixture(tmp_path, file_scale=1):
    """Two tiny images written by cv2 and a COCO file: an object with a hole, one in two pieces (RLE), two
    overlapping objects (one RLE with uncompressed counts), a crowd region, a one-part and a two-part polygon."""
    h, w = 24, 32
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(images / name), np.full((h * file_scale, w * file_scale, 3), 90, np.uint8))
    hole = np.zeros((h, w), bool)
    hole[2:14, 2:14] = True
    hole[6:10, 6:10] = False
    two = np.zeros((h, w), bool)
    two[16:20, 2:6] = two[16:22, 20:30] = True
    over_a = np.zeros((h, w), bool)
    over_a[3:12, 16:26] = True
    over_b = np.zeros((h, w), bool)
    over_b[8:15, 20:31] = True  # overlaps over_a
    crowd = np.zeros((h, w), bool)
    crowd[18:24, 8:18] = True
    uncompressed = {"size": [h, w], "counts": []}
    flat, v, n = over_b.T.reshape(-1), False, 0  # column-major runs starting with 0s
    for px in flat:
        if px != v:
            uncompressed["counts"].append(n)
            v, n = px, 0
        n += 1
    uncompressed["counts"].append(n)
    one_part = [4.0, 2.0, 28.0, 2.0, 28.0, 20.0, 4.0, 20.0]
    parts = [[2.0, 2.0, 10.0, 2.0, 10.0, 10.0], [20.0, 12.0, 30.0, 12.0, 30.0, 22.0, 20.0, 22.0]]

    def ann(i, img, cat, seg, crowd_flag=0):
        return {"id": i, "image_id": img, "category_id": cat, "segmentation": seg, "bbox": [0, 0, 1, 1], "area": 1,
                "iscrowd": crowd_flag}  # fmt: skip

    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": w, "height": h},
            {"id": 2, "file_name": "b.png", "width": w, "height": h},
        ],
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "person"}],
        "annotations": [
            ann(1, 1, 1, _compressed(hole)),
            ann(2, 1, 1, _compressed(two)),
            ann(3, 1, 2, _compressed(over_a)),
            ann(4, 1, 2, uncompressed),
            ann(5, 1, 2, _compressed(crowd), 1),
            ann(6, 2, 1, [one_part]),
            ann(7, 2, 2, parts),
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    return images, {"hole": hole, "two": two, "over_a": over_a, "over_b": over_b, "crowd": crowd}, one_part, parts


def test_coco_rle_round_trip_gives_identical_counts_and_areas(tmp_path):
    images, masks, one_part, parts = _coco_fixture(tmp_path)
    rep = import_coco(str(tmp_path / "c.json"), images, tmp_path / "ds", val=0.0, verbose=False)
    assert rep["skipped"] == []
    assert rep["annotations"] == {"rle": 4, "crowd": 1, "polygon": 1, "polygons (several parts)": 1}
    rows, inst = _rows_and_masks(tmp_path / "ds", "train", "a")
    assert [c for c, _ in rows] == [0, 0, 1, 1] and all(len(c) == 4 for _, c in rows)  # box rows: detection reads them
    for line, key in enumerate(("hole", "two", "over_a", "over_b"), 1):
        assert np.array_equal(decode(inst.objects[line], 24, 32), masks[key]), key  # overlaps stay apart
    assert [c for c, _ in inst.crowd] == [1]

    (out,) = export_coco(tmp_path / "ds/data.yaml", tmp_path / "coco", verbose=False)
    src = json.loads((tmp_path / "c.json").read_text())
    back = json.loads(out.read_text())
    by_name = {i["file_name"]: i["id"] for i in back["images"]}
    anns_a = [a for a in back["annotations"] if a["image_id"] == by_name["a.png"]]
    assert [a["iscrowd"] for a in anns_a] == [0, 0, 0, 0, 1]
    for orig, new, key in zip(src["annotations"][:5], anns_a, ("hole", "two", "over_a", "over_b", "crowd")):
        seg = orig["segmentation"]
        want = mask_utils.frPyObjects(seg, 24, 32) if isinstance(seg["counts"], list) else seg
        want_counts = want["counts"].decode() if isinstance(want["counts"], bytes) else want["counts"]
        assert new["segmentation"] == {"size": [24, 32], "counts": want_counts}, key  # the same counts
        assert new["area"] == int(masks[key].sum()), key
        assert new["bbox"] == pytest.approx(mask_utils.toBbox(rle_bytes(want_counts)).tolist()), key
        assert new["category_id"] == orig["category_id"]
    # decoded by pycocotools, the exported masks are the original objects
    for new, key in zip(anns_a, ("hole", "two", "over_a", "over_b", "crowd")):
        r = {"size": new["segmentation"]["size"], "counts": new["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(r).astype(bool), masks[key]), key

    # polygons: one part stays a polygon (row and segmentation), two parts become one exact object
    anns_b = [a for a in back["annotations"] if a["image_id"] == by_name["b.png"]]
    assert np.allclose(anns_b[0]["segmentation"][0], one_part, atol=1e-4)
    union = np.zeros((24, 32), np.uint8)
    for p in parts:
        from visionkit.data.format import fill_polygon

        fill_polygon(union, np.reshape(p, (-1, 2)), 1)
    assert anns_b[1]["segmentation"]["counts"] == encode_mask(union.astype(bool))

    # and again: export → import → export is a fixed point
    import_coco(str(out), tmp_path / "ds/images/train", tmp_path / "ds2", val=0.0, verbose=False)
    (out2,) = export_coco(tmp_path / "ds2/data.yaml", tmp_path / "coco2", verbose=False)
    again = json.loads(out2.read_text())
    strip = [{k: a[k] for k in ("segmentation", "area", "iscrowd", "category_id")} for a in back["annotations"]]
    strip2 = [{k: a[k] for k in ("segmentation", "area", "iscrowd", "category_id")} for a in again["annotations"]]
    assert strip2[:5] == strip[:5] and strip2[6] == strip[6]
    assert np.allclose(strip2[5]["segmentation"][0], strip[5]["segmentation"][0], atol=1e-4)


def test_coco_masks_of_a_resized_image_are_resized_nearest(tmp_path):
    images, masks, _, _ = _coco_fixture(tmp_path, file_scale=2)
    rep = import_coco(str(tmp_path / "c.json"), images, tmp_path / "ds", val=0.0, verbose=False)
    assert len(rep["resized"]) == 2
    rows, inst = _rows_and_masks(tmp_path / "ds", "train", "a")
    assert (inst.height, inst.width) == (48, 64)
    big = {
        k: cv2.resize(m.astype(np.uint8), (64, 48), interpolation=cv2.INTER_NEAREST).astype(bool)
        for k, m in masks.items()
    }
    assert np.array_equal(decode(inst.objects[1], 48, 64), big["hole"])
    assert np.array_equal(decode(inst.crowd[0][1], 48, 64), big["crowd"])
    assert row_to_box(rows[1][1]) == pytest.approx(mask_box_row(big["two"]), abs=1e-6)
    sem = cv2.imread(str(tmp_path / "ds/masks/train/a.png"), cv2.IMREAD_UNCHANGED)
    assert sem.shape == (48, 64) and np.array_equal(
        sem == 1, big["hole"] | (big["two"] & ~big["over_a"] & ~big["over_b"])
    )


@pytest.mark.parametrize(
    ("counts", "reason"),
    [("0k?", "cover"), ("zz", "character"), ([3, -1], "non-negative"), ("0R", "truncated")],
)
def test_coco_bad_rle_is_skipped_with_its_reason(tmp_path, counts, reason):
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((4, 4, 3), np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": counts},
             "bbox": [0, 0, 1, 1], "iscrowd": 0},
        ],
    }  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(coco))
    rep = import_coco(str(tmp_path / "c.json"), images, tmp_path / "ds", val=0.0, verbose=False)
    ((skip,),) = [rep["skipped"]]
    assert skip["annotation"] == 1 and "malformed RLE" in skip["reason"] and reason in skip["reason"]

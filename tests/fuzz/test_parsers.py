"""Property-based tests (hypothesis) for every parser of outside input: whatever the bytes, a parser returns valid
data or raises visionkit's own error type (VisionkitError), never anything else, in bounded time.

`make test` runs a few dozen examples per parser; `make fuzz` runs 10,000 (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from visionkit.errors import VisionkitError

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# numbers as a file might hold them: ordinary, huge, negative, NaN and inf spelled several ways, and junk
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10, 10).map(str),
    st.floats(0, 1).map(lambda v: f"{v:.6f}"),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-0", "0x10"]),
    st.text(max_size=5),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vk-fuzz-"))


# -- YOLO label rows ---------------------------------------------------------------------------------------------
@FAST
@given(st.lists(st.lists(NUMBER_TEXT, max_size=9).map(" ".join), max_size=6).map("\n".join), st.binary(max_size=8))
@example("", b"\x80")  # found by this test: invalid UTF-8 was a UnicodeDecodeError
@example("0 nan 0.5 0.1 0.1", b"")  # found: NaN coordinates were read and trained on
@example("1 0.5 inf 0.1 0.1", b"")
def test_yolo_label_rows(text, junk):
    from visionkit.data.format import read_label_file

    d = _tmpdir()
    try:
        path = d / "a.txt"
        path.write_bytes(text.encode("utf-8", "surrogatepass") + junk)
        try:
            rows = read_label_file(path, num_classes=4)
        except VisionkitError:
            return
        for cls, coords in rows:
            assert 0 <= cls < 4 and (len(coords) == 4 or (len(coords) >= 6 and len(coords) % 2 == 0))
            assert all(math.isfinite(v) for v in coords)
    finally:
        shutil.rmtree(d)


# -- brush RLE -----------------------------------------------------------------------------------------------------
@FAST
@given(st.lists(st.integers(0, 255), max_size=64), st.one_of(st.none(), st.integers(0, 10**6)))
def test_brush_rle_decoder(data, expected):
    from visionkit.data.labelstudio.rle import decode_rle

    try:
        out = decode_rle(data, expected=expected)
    except VisionkitError:
        return
    assert expected is None or out.size == expected


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_brush_rle_round_trip(h, w, seed, density):
    from visionkit.data.labelstudio.rle import decode_brush_mask, encode_brush_mask

    mask = np.random.default_rng(seed).random((h, w)) < density
    assert np.array_equal(decode_brush_mask(encode_brush_mask(mask), h, w) == 255, mask)


# -- the key=value command line --------------------------------------------------------------------------------------
KEYS = st.sampled_from(
    [
        "imgsz",
        "batch",
        "epochs",
        "lr0",
        "conf",
        "iou",
        "classes",
        "device",
        "amp",
        "optimizer",
        "resume",
        "cache",
        "max_det",
        "mosaic",
        "seed",
        "nproc",
        "fliplr",
        "epoch",
        "",
        "=",
        "name",
    ]
)


@FAST
@given(st.lists(st.tuples(KEYS, NUMBER_TEXT | st.text(max_size=12)).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=5))
def test_command_line_values(argv):
    from visionkit.cfg import RANGES, parse_kv, resolve

    try:
        args = resolve(parse_kv(argv))
    except VisionkitError:
        return
    for key, rule in RANGES.items():
        value = args.get(key)
        if value is not None and not isinstance(value, list):
            assert rule.admits(value), (key, value)


# -- data.yaml -------------------------------------------------------------------------------------------------------
@FAST
@given(
    st.one_of(
        JSONISH.map(lambda v: json.dumps(v)),
        st.text(max_size=80),
        st.dictionaries(
            st.sampled_from(
                [
                    "path",
                    "train",
                    "val",
                    "names",
                    "nc",
                    "mask_names",
                    "test",
                    "depth_scale",
                    "classify",
                    "classify_names",
                ]
            ),
            JSONISH,
            max_size=5,
        ).map(json.dumps),
    )
)
@example('{"path": 1}')  # found: a number where a folder belongs was a TypeError
@example('{"path": "\\u0000"}')  # found: a NUL byte in a path was a ValueError
@example('{"names": {"a": "x"}}')
@example('{"depth_scale": "mm"}')  # found: a text depth_scale was a ValueError in training
@example('{"classify": 5}')  # found: a number where the classification folder belongs was a TypeError
def test_data_yaml(text):
    from visionkit.data.check import check_dataset
    from visionkit.data.format import load_data_yaml

    d = _tmpdir()
    try:
        path = d / "data.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            data = load_data_yaml(path)
        except VisionkitError:
            return
        assert isinstance(data, dict) and "root" in data
        try:  # what the file says reaches check's rules too: a result or a clear error
            result = check_dataset(path, verbose=False)
        except VisionkitError:
            return
        assert result["errors"] >= 0
    finally:
        shutil.rmtree(d)


# -- Label Studio tasks and regions ------------------------------------------------------------------------------
REGION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["rectanglelabels", "polygonlabels", "brushlabels", "choices", "keypointlabels", "x"]),
        "value": st.dictionaries(
            st.sampled_from(
                [
                    "x",
                    "y",
                    "width",
                    "height",
                    "rotation",
                    "points",
                    "rle",
                    "format",
                    "rectanglelabels",
                    "polygonlabels",
                    "brushlabels",
                    "choices",
                ]
            ),
            JSONISH | st.floats(allow_nan=True, allow_infinity=True),
            max_size=8,
        ),
        "original_width": st.one_of(st.integers(-5, 50), st.floats(allow_nan=True), st.text(max_size=3)),
        "original_height": st.one_of(st.integers(-5, 50), st.floats(allow_nan=True), st.text(max_size=3)),
        "from_name": st.sampled_from(["box", "label", ""]),
        "to_name": st.just("image"),
    }
)
TASK = st.fixed_dictionaries(
    {
        "id": st.integers(0, 100),
        "data": st.fixed_dictionaries(
            {
                "image": st.sampled_from(
                    [
                        "/data/upload/1/abcd1234-img.png",
                        "img.png",
                        "img.jpg",
                        "../etc/passwd",
                        "/abs.png",
                        "",
                        "s3://b/img.png",
                    ]
                )
            }
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 9), "was_cancelled": st.booleans(), "result": st.lists(REGION, max_size=4)}
            ),
            max_size=2,
        ),
    }
)


@pytest.fixture(scope="module")
def ls_images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ls-images")
    cv2.imwrite(str(d / "img.png"), np.full((20, 30, 3), 128, np.uint8))
    cv2.imwrite(str(d / "img.jpg"), np.full((20, 30, 3), 60, np.uint8))  # the same stem: must never share a label
    return d


def _assert_unique_stems(root: Path) -> None:
    """No two images of one split folder share a stem (they would read one label, mask and depth file)."""
    for folder in (root / "images").glob("*"):
        stems = [p.stem for p in folder.iterdir()]
        assert len(stems) == len(set(stems)), sorted(stems)


FOUND_TASK = [
    {
        "id": 0,
        "data": {"image": "img.png"},
        "annotations": [
            {
                "id": 0,
                "was_cancelled": False,
                "result": [
                    {
                        "type": "rectanglelabels",
                        "value": {"rectanglelabels": 1.0},
                        "from_name": "box",
                        "to_name": "image",
                    },
                    {
                        "type": "rectanglelabels",
                        "value": {"x": float("nan"), "y": 1, "width": 2, "height": 3, "rectanglelabels": ["a"]},
                        "from_name": "box",
                        "to_name": "image",
                    },
                    {
                        "type": "rectanglelabels",
                        "value": {"x": 1, "y": 1, "width": -2, "height": 3, "rectanglelabels": ["a"]},
                        "from_name": "box",
                        "to_name": "image",
                    },
                    {
                        "type": "polygonlabels",
                        "value": {"points": [[1, 2], [3], "x"], "polygonlabels": ["a"]},
                        "from_name": "box",
                        "to_name": "image",
                    },
                    {
                        "type": "rectanglelabels",
                        "value": {"x": 1, "y": 1, "width": 20, "height": 30, "rectanglelabels": ["a"]},
                        "from_name": "box",
                        "to_name": "image",
                    },
                ],
            }
        ],
    }
]


@FAST
@given(st.lists(TASK, min_size=1, max_size=3))
@example(FOUND_TASK)  # found: a label that is a number, NaN or negative sizes, ragged points were tracebacks
def test_label_studio_tasks(ls_images, tasks):
    from visionkit.data.labelstudio import import_labelstudio

    out = _tmpdir() / "ds"
    try:
        try:
            report = import_labelstudio(tasks, out, verbose=False, images_dir=ls_images, val=0.0, unknown="add")
        except VisionkitError:
            assert not out.exists() or not any(out.iterdir())  # a failed import leaves nothing
            return
        r = report["regions"]
        assert r["written"] + r["skipped"] == r["in_export"]  # every region written or skipped with a reason
        for label in out.rglob("labels/*/*.txt"):
            for line in label.read_text().splitlines():
                assert all(math.isfinite(float(v)) for v in line.split()[1:])
        _assert_unique_stems(out)
    finally:
        shutil.rmtree(out.parent)


# every level of an export with any JSON type where an object or a list belongs
ANY = JSONISH | st.floats(allow_nan=True, allow_infinity=True)
LOOSE_REGION = ANY | REGION | REGION.map(lambda r: {**r, "value": 5}) | REGION.map(lambda r: {**r, "type": ["x"]})
LOOSE_ANNOTATION = ANY | st.fixed_dictionaries(
    {
        "id": st.integers(0, 9) | ANY,
        "was_cancelled": st.booleans() | ANY,
        "result": st.lists(LOOSE_REGION, max_size=3) | ANY,
    },
    optional={"created_at": st.text(max_size=3) | ANY, "updated_at": st.text(max_size=3) | ANY},
)
LOOSE_TASK = ANY | st.fixed_dictionaries(
    {
        "id": st.integers(0, 5) | st.text(max_size=2) | ANY,
        "data": st.fixed_dictionaries({"image": st.sampled_from(["img.png", "img.jpg"]) | ANY}) | ANY,
        "annotations": st.lists(LOOSE_ANNOTATION, max_size=3) | ANY,
    },
    optional={"predictions": st.lists(LOOSE_ANNOTATION | st.integers(0, 3), max_size=2) | ANY},
)


@FAST
@given(st.lists(LOOSE_TASK, max_size=4) | ANY, st.booleans())
@example([1, "x", None], False)
@example([{"id": 1, "data": {"image": "img.png"}, "annotations": [1, "x", None]}], True)  # found: AttributeError
@example([{"id": "", "data": {"image": "img.png"}}, {"id": "b", "data": {"image": "img.png"}}], True)  # found: sort
@example([{"id": 1, "data": {"image": "img.png"}, "predictions": 5}], True)  # found: TypeError
def test_label_studio_export_levels(ls_images, tasks, background):
    """Any type at any level of an export: a dataset (bad parts listed with their JSON path) or one clear error."""
    from visionkit.data.labelstudio import import_labelstudio

    out = _tmpdir() / "ds"
    try:
        try:
            report = import_labelstudio(
                tasks, out, verbose=False, images_dir=ls_images, val=0.0, unknown="add", background=background
            )
        except VisionkitError:
            assert not out.exists() or not any(out.iterdir())
            return
        r = report["regions"]
        assert r["written"] + r["skipped"] == r["in_export"]
        assert all(m["path"].startswith("tasks[") and m["reason"] for m in report["malformed"])
        _assert_unique_stems(out)
    finally:
        shutil.rmtree(out.parent)


# -- COCO JSON -------------------------------------------------------------------------------------------------------
COCO = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(0, 3) | st.text(max_size=2),
                    "file_name": st.sampled_from(["img.png", "img.jpg", "../x.png", "", "none.png"]),
                    "width": st.integers(-1, 40) | st.floats(allow_nan=True),
                    "height": st.integers(-1, 40) | st.floats(allow_nan=True),
                }
            ),
            max_size=3,
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(0, 9),
                    "image_id": st.integers(0, 3) | st.text(max_size=2),
                    "category_id": st.integers(0, 3),
                    "bbox": st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 50), max_size=5)
                    | JSONISH,
                    "segmentation": JSONISH,
                    "iscrowd": st.integers(0, 1),
                }
            ),
            max_size=4,
        ),
        "categories": st.lists(
            st.fixed_dictionaries({"id": st.integers(0, 3), "name": st.text(max_size=6)}), max_size=3
        ),
    }
)


@FAST
@given(COCO)
@example(
    {
        "images": [
            {"id": 0, "file_name": "img.png", "width": 30, "height": 20},
            {"id": "0", "file_name": "img.png", "width": 30, "height": 20},
        ],
        "annotations": [],
        "categories": [],
    }
)  # found: mixed id types were a TypeError
@example(
    {
        "images": [{"id": 0, "file_name": "img.png", "width": 30, "height": 20}],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, float("nan")], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}],
    }
)  # found: a short bbox was an IndexError
def test_coco_json(ls_images, coco):
    from visionkit.data.coco import import_coco

    d = _tmpdir()
    try:
        src = d / "instances.json"
        src.write_text(json.dumps(coco))
        try:
            import_coco(src, ls_images, d / "ds", val=0.0, verbose=False)
        except VisionkitError:
            return
        for label in (d / "ds").rglob("labels/*/*.txt"):
            for line in label.read_text().splitlines():
                assert all(math.isfinite(float(v)) for v in line.split()[1:])
        _assert_unique_stems(d / "ds")
    finally:
        shutil.rmtree(d)


# -- datasets on disk: what `data check` passes, training accepts -------------------------------------------------
LABEL_STATE = st.sampled_from(
    ["box", "box", "polygon", "none", "empty", "tiny", "outside", "bad row", "class 5", "folder"]
)
LABEL_TEXT = {
    "box": "0 0.5 0.5 0.4 0.4\n",
    "polygon": "0 0.1 0.1 0.9 0.1 0.5 0.9\n",
    "empty": "",
    "tiny": "0 0.5 0.5 0.01 0.01\n",  # under a pixel: training drops it
    "outside": "0 1.5 1.5 0.2 0.2\n",
    "bad row": "0 0.5 x\n",
    "class 5": "5 0.5 0.5 0.4 0.4\n",
}
SPLIT = st.dictionaries(st.sampled_from(["a.jpg", "a.png", "b.png", "c.jpg", "d.bmp"]), LABEL_STATE, max_size=4)


def _write_split(root: Path, split: str, images: dict[str, str], labels_dir: str) -> None:
    for i, (name, state) in enumerate(images.items()):
        img = root / "images" / split / name
        img.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img), np.full((16, 24, 3), 30 * i, np.uint8))
        label = root / labels_dir / split / f"{Path(name).stem}.txt"
        if state == "none" or label.exists():  # a.jpg and a.png: the first one's label is the shared file
            continue
        label.parent.mkdir(parents=True, exist_ok=True)
        if state == "folder":
            label.mkdir()
        else:
            label.write_text(LABEL_TEXT[state])


@FAST
@given(
    SPLIT,
    SPLIT,
    st.sampled_from(["labels", "labels", "Labels"]),  # a typo in the folder name: no label file found at all
    st.one_of(st.none(), st.just(["a"]), st.just(["a", "b"]), st.just([])),
    st.booleans(),
    st.sampled_from(["detect", "segment"]),
)
@example({"a.jpg": "box"}, {"c.jpg": "none"}, "labels", ["a"], False, "detect")  # val unlabelled: trained on nothing
@example({"a.jpg": "box", "a.png": "box"}, {"c.jpg": "box"}, "labels", ["a"], False, "detect")  # one label, 2 images
@example({"a.jpg": "box"}, {"c.jpg": "box"}, "labels", None, False, "detect")  # no names: check said 0 errors
@example({"a.jpg": "box"}, {"c.jpg": "tiny"}, "labels", ["a"], False, "detect")  # a box under a pixel is no object
@example({"a.jpg": "polygon"}, {"c.jpg": "box"}, "labels", ["a"], False, "segment")  # a box is not a mask
def test_what_check_passes_training_accepts(train, val, labels_dir, names, allow_empty, task_name):
    """Random small datasets with the defects users make: whatever `data check task=...` passes, that task's
    training accepts (its datasets build for train and val); every refusal is a clear error."""
    from visionkit.cfg import resolve
    from visionkit.data.check import check_dataset
    from visionkit.data.format import write_data_yaml
    from visionkit.registry import REGISTRY

    d = _tmpdir()
    try:
        _write_split(d, "train", train, labels_dir)
        _write_split(d, "val", val, labels_dir)
        spec = {"path": ".", "train": "images/train", "val": "images/val"}
        if names is not None:
            spec["names"] = names
        write_data_yaml(d / "data.yaml", spec)
        task = REGISTRY.get("task", task_name)()
        allow_empty = allow_empty and "allow_empty" in task.keys  # the key exists where the rule does
        try:
            result = check_dataset(d / "data.yaml", verbose=False, task=task_name, allow_empty=allow_empty)
        except VisionkitError:
            result = None
        keys = {"data": str(d / "data.yaml"), "workers": 0, **({"allow_empty": True} if allow_empty else {})}
        args = resolve(keys, task.keys)
        try:
            data = task.resolve_data(args)
            for split in ("train", "val"):
                task.build_dataset(data, split, 32, split == "train", args)
        except VisionkitError as e:
            assert result is None or result["errors"], f"check passed, training refused: {e}"
        if task_name != "detect":
            return
        # the same property for check without task= (the rules of the tasks whose folders hold files)
        try:
            inferred = check_dataset(d / "data.yaml", verbose=False, allow_empty=allow_empty)
        except VisionkitError:
            return
        if not inferred["errors"]:
            assert result is not None and not result["errors"]
    finally:
        shutil.rmtree(d)


# -- masks and depth maps --------------------------------------------------------------------------------------------
MAP = st.one_of(
    st.binary(max_size=40).map(lambda b: ("bytes", b)),
    st.tuples(
        st.sampled_from(["uint8", "uint16", "float32", "int32", "bool"]),
        st.sampled_from([(16, 24), (8, 8), (16, 24, 3), (16,), (0, 0)]),
        st.sampled_from(["png", "npy"]),
        st.floats(allow_nan=True, allow_infinity=True, width=32),
    ),
)


def _write_map(path: Path, spec) -> None:
    """Random bytes, or an array of some dtype and shape saved as PNG (what OpenCV can write) or .npy."""
    if spec[0] == "bytes":
        path.write_bytes(spec[1])
        return
    dtype, shape, fmt, value = spec
    arr = np.zeros(shape, dtype=dtype)
    if arr.size:
        arr.flat[0] = value if dtype == "float32" else 7  # NaN and inf included
    if fmt == "npy":
        np.save(path.with_suffix(".npy"), arr)
        return
    if dtype not in ("uint8", "uint16"):
        arr = np.nan_to_num(arr.astype(np.float32), posinf=255, neginf=0).clip(0, 255).astype(np.uint8)
    try:
        written = cv2.imwrite(str(path), arr)
    except cv2.error:
        written = False
    if not written:
        path.write_bytes(b"")


@FAST
@given(MAP, MAP, st.sampled_from([None, 1000, 1.5]))
@example(("bytes", b"\x89PNG"), ("bytes", b"\x93NUMPY"), 1000)
def test_mask_and_depth_files(mask, depth, depth_scale):
    """Any file where a mask or depth map belongs: the readers and `data check` give a result or a clear error."""
    from visionkit.data.check import check_dataset
    from visionkit.data.format import read_depth, read_mask, write_data_yaml

    d = _tmpdir()
    try:
        (d / "images/train").mkdir(parents=True)
        cv2.imwrite(str(d / "images/train/a.png"), np.zeros((16, 24, 3), np.uint8))
        for kind in ("masks", "depth"):
            (d / kind / "train").mkdir(parents=True)
        _write_map(d / "masks/train/a.png", mask)
        _write_map(d / "depth/train/a.png", depth)
        for reader, path in ((read_mask, d / "masks/train/a.png"), (lambda p: read_depth(p, depth_scale), None)):
            for p in [path] if path else [d / "depth/train/a.png", d / "depth/train/a.npy"]:
                if not p.exists():
                    continue
                try:
                    out = reader(p)
                except VisionkitError:
                    continue
                assert isinstance(out, np.ndarray) and out.ndim == 2
        spec = {"path": ".", "train": "images/train", "names": ["x"]}
        if depth_scale is not None:
            spec["depth_scale"] = depth_scale
        write_data_yaml(d / "data.yaml", spec)
        try:
            result = check_dataset(d / "data.yaml", verbose=False)
        except VisionkitError:
            return
        assert isinstance(result["errors"], int)
    finally:
        shutil.rmtree(d)


# -- ImageFolder -----------------------------------------------------------------------------------------------------
@FAST
@given(
    st.dictionaries(
        st.sampled_from(["cat", "dog", ".hidden", "a b", "x.jpg"]),
        st.lists(st.sampled_from(["ok.jpg", "ok.png", "bad.jpg", "note.txt", "sub"]), max_size=3),
        max_size=3,
    ),
    st.one_of(st.none(), st.just(["cat", "dog"]), st.just(["cat"])),
)
def test_image_folder_layouts(classes, names):
    """Any layout of class folders: a dataset or a clear error."""
    from visionkit.data.datasets import ImageFolderDataset

    d = _tmpdir()
    try:
        split = d / "train"
        split.mkdir()
        for cls, files in classes.items():
            if cls.endswith(".jpg"):  # a file where a class folder belongs
                (split / cls).write_bytes(b"x")
                continue
            (split / cls).mkdir()
            for f in files:
                if f == "sub":
                    (split / cls / f).mkdir(exist_ok=True)
                elif f.startswith("ok"):
                    cv2.imwrite(str(split / cls / f), np.zeros((8, 8, 3), np.uint8))
                else:
                    (split / cls / f).write_bytes(b"not an image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = ImageFolderDataset(split, names=names)
        except VisionkitError:
            return
        assert len(ds) >= 1
    finally:
        shutil.rmtree(d)


# -- checkpoints -----------------------------------------------------------------------------------------------------
@FAST
@given(
    st.one_of(
        st.binary(max_size=200),
        JSONISH.map(lambda v: ("obj", v)),
        st.dictionaries(
            st.sampled_from(
                ["format", "task", "model_config", "state_dict", "names", "imgsz", "in_channels", "mean", "std"]
            ),
            JSONISH,
            max_size=9,
        ).map(lambda v: ("obj", v)),
    )
)
@example(b"")  # found: an empty file was an IndexError while the error message was built
def test_checkpoint_files(content):
    from visionkit.models.checkpoint import load_checkpoint, model_from_checkpoint

    d = _tmpdir()
    try:
        path = d / "x.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content[1], path)
        try:
            ckpt = load_checkpoint(path)
            model_from_checkpoint(ckpt, path)
        except VisionkitError:
            return
    finally:
        shutil.rmtree(d)


# -- ONNX metadata ---------------------------------------------------------------------------------------------------
META_VALUE = st.one_of(
    JSONISH.map(json.dumps),
    st.text(max_size=12),
    st.integers(-5, 10**5).map(str),
    st.sampled_from(["nan", "inf", "[]", "[1]", '["a", 2]', "[0.5, 0.5, 0.5]", "[null]", "1e999"]),
)


def _identity_onnx(path: Path, metadata: dict[str, str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["task", "names", "imgsz", "in_channels", "mean", "std", "model_config", "nms", "layout"]),
        META_VALUE,
        max_size=9,
    )
)
@example({"task": "classify", "names": '["a"]', "imgsz": "8", "mean": '["x", 1, 2]'})  # found: mean of strings
@example({"task": "classify", "names": "{}", "imgsz": "8", "std": "[0, 1, 1]"})  # found: a zero std
@example({"task": "classify", "names": '[["a"]]', "imgsz": "8"})  # found: names that are not text
def test_onnx_metadata(metadata):
    from visionkit.runtime.onnx_backend import OnnxModel

    d = _tmpdir()
    try:
        path = d / "x.onnx"
        _identity_onnx(path, metadata)
        try:
            meta = OnnxModel(path).meta
        except VisionkitError:
            return
        assert isinstance(meta["task"], str) and all(isinstance(n, str) for n in meta["names"])
        assert isinstance(meta["imgsz"], int) and meta["in_channels"] == 3
        for key in ("mean", "std"):
            assert len(meta[key]) == 3 and all(isinstance(v, float) and math.isfinite(v) for v in meta[key])
        assert all(v > 0 for v in meta["std"])
        assert meta["model_config"] is None or isinstance(meta["model_config"], dict)
    finally:
        shutil.rmtree(d)

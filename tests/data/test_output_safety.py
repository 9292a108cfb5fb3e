"""Data safety (issue 9): an import never deletes or writes outside what it owns, and sizes declared by a file are
checked before anything is allocated. Every case runs through the CLI, as a user would meet it."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, run_cli
from visionkit.data.labelstudio.rle import decode_rle
from visionkit.data.output import MANIFEST, UnsafeNameError, safe_component
from visionkit.errors import DataError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import save_checkpoint
from visionkit.registry import REGISTRY

LS = FIXTURES / "labelstudio"
CONFIGS = json.loads((LS / "label_configs.json").read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def user_folder(tmp_path: Path) -> Path:
    """A user's folder of photos and notes, with a Label Studio export beside the photos."""
    photos = tmp_path / "photos"
    shutil.copytree(LS / "images", photos)
    (photos / "notes.txt").write_text("my notes\n")
    task = {
        "id": 1,
        "data": {"image": "/data/upload/1/0a1b2c3d-img0.png"},
        "annotations": [
            {
                "id": 7,
                "result": [
                    {
                        "id": "r1",
                        "type": "rectanglelabels",
                        "from_name": "label",
                        "to_name": "image",
                        "original_width": 320,
                        "original_height": 200,
                        "value": {
                            "x": 10,
                            "y": 10,
                            "width": 20,
                            "height": 20,
                            "rotation": 0,
                            "rectanglelabels": ["cat"],
                        },
                    }
                ],
            }
        ],
    }
    (photos / "export.json").write_text(json.dumps([task]))
    return photos


def ls_import(src: Path, images: Path, out: Path, *extra: str):
    return run_cli("data", "import", "labelstudio", f"src={src}", f"images={images}", f"out={out}", "val=0", *extra)


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_import_refuses_an_out_that_overlaps_the_images(tmp_path, where):
    photos = user_folder(tmp_path)
    before = snapshot(tmp_path)
    out = {"same": photos, "parent": tmp_path, "inside": photos / "dataset"}[where]
    r = ls_import(photos / "export.json", photos, out, "exist_ok=True")
    assert r.returncode == 2, r.stderr
    assert "never writes where it reads" in r.stderr and "images=" in r.stderr
    assert snapshot(tmp_path) == before  # nothing touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no temporary folder left


def test_import_refuses_an_out_that_holds_the_export_file(tmp_path):
    photos = user_folder(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    shutil.move(photos / "export.json", project / "export.json")
    before = snapshot(tmp_path)
    r = ls_import(project / "export.json", photos, project, "exist_ok=True")
    assert r.returncode == 2 and "src=" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before


def test_coco_import_refuses_overlaps(tmp_path):
    photos = user_folder(tmp_path)
    coco = {
        "images": [{"id": 1, "file_name": "img0.png", "width": 320, "height": 200}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40], "iscrowd": 0, "area": 2000}
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (photos / "instances.json").write_text(json.dumps(coco))
    before = snapshot(tmp_path)
    for out in (photos, tmp_path):
        r = run_cli(
            "data",
            "import",
            "coco",
            f"src={photos / 'instances.json'}",
            f"images={photos}",
            f"out={out}",
            "exist_ok=True",
        )
        assert r.returncode == 2 and "never writes where it reads" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before
    r = run_cli(
        "data",
        "import",
        "coco",
        f"src={photos / 'instances.json'}",
        f"images={photos}",
        f"out={tmp_path / 'ds'}",
        "val=0",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ds/labels/train/img0.txt").is_file()


def test_exist_ok_replaces_only_a_previous_import(tmp_path):
    photos = user_folder(tmp_path)
    out = tmp_path / "ds"
    assert ls_import(photos / "export.json", photos, out).returncode == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert "images/train/img0.png" in manifest["files"] and "import_report.json" in manifest["files"]
    # a label cache written by training is the import's too; a re-import replaces the folder
    (out / "labels/train/labels.cache.json").write_text("{}")
    r = ls_import(photos / "export.json", photos, out, "exist_ok=True")
    assert r.returncode == 0, r.stderr
    assert not (out / "labels/train/labels.cache.json").exists()
    # a file the user put there makes the import refuse, and nothing changes
    (out / "images/train/my_photo.jpg").write_bytes(b"precious")
    before = snapshot(out)
    r = ls_import(photos / "export.json", photos, out, "exist_ok=True")
    assert r.returncode == 2 and "my_photo.jpg" in r.stderr and "visionkit did not write" in r.stderr, r.stderr
    assert snapshot(out) == before
    # a folder no visionkit import wrote (no manifest) is never replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    r = ls_import(photos / "export.json", photos, other, "exist_ok=True")
    assert r.returncode == 2 and "no visionkit manifest" in r.stderr, r.stderr
    assert (other / "thesis.tex").read_text() == "years of work"


def test_coco_export_does_not_overwrite_without_exist_ok(tmp_path, shapes_root):
    out = tmp_path / "coco"
    out.mkdir()
    (out / "instances_train.json").write_text("the original")
    r = run_cli("data", "export", "coco", f"data={shapes_root / 'data.yaml'}", f"out={out}")
    assert r.returncode == 2 and "exist_ok=True" in r.stderr, r.stderr
    assert (out / "instances_train.json").read_text() == "the original"
    r = run_cli("data", "export", "coco", f"data={shapes_root / 'data.yaml'}", f"out={out}", "exist_ok=True")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "instances_train.json").read_text())["images"]


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../../../x", "/abs/x", "a/b", "a\\b", "C:evil", "tab\tname", "x" * 256]
)
def test_safe_component_refuses(name):
    with pytest.raises(UnsafeNameError, match="refused"):
        safe_component(name, "class name")


@pytest.mark.parametrize("name", ["cat", "grey cat", "Ünïcödé", "a.b-c_d (1)", "x" * 255])
def test_safe_component_accepts(name):
    assert safe_component(name, "class name") == name


def choice_task(tid: int, image: str, choice: str) -> dict:
    return {
        "id": tid,
        "data": {"image": image},
        "annotations": [
            {
                "id": tid * 10,
                "result": [
                    {
                        "id": f"c{tid}",
                        "type": "choices",
                        "from_name": "scene",
                        "to_name": "image",
                        "value": {"choices": [choice]},
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize("bad", ["../../../escaped", "/tmp/escaped_abs", ".."])
def test_a_choice_never_becomes_a_path_outside_out(tmp_path, bad):
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                choice_task(1, "/data/upload/1/0a1b2c3d-img0.png", bad),
                choice_task(2, "/data/upload/1/0a1b2c3d-img1.png", "indoor"),
            ]
        )
    )
    r = ls_import(export, LS / "images", tmp_path / "work/ds")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "work/ds/import_report.json").read_text())
    assert report["regions"] == {"in_export": 2, "written": 1, "skipped": 1}
    assert "refused choice" in report["skipped_regions"][0]["reason"]
    assert "refused choice" in r.stdout  # the printed table says so too
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(f.startswith("work/ds/") or f == "export.json" for f in files), files
    assert not Path("/tmp/escaped_abs").exists()
    assert (tmp_path / "work/ds/classify/train/indoor/img1.png").is_file()


def test_a_config_with_an_unsafe_choice_is_refused(tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([choice_task(1, "/data/upload/1/0a1b2c3d-img0.png", "indoor")]))
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Image name="image" value="$image"/><Choices name="scene" toName="image">'
        '<Choice value="indoor"/><Choice value="../up"/></Choices></View>'
    )
    r = ls_import(export, LS / "images", tmp_path / "ds", f"config={config}")
    assert r.returncode == 1 and "refused choice in the labeling config '../up'" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.xml", "export.json"]


def test_task_ids_cannot_smuggle_a_path_into_an_image_name(tmp_path):
    tasks = [choice_task(t, "/data/upload/1/0a1b2c3d-img0.png", "indoor") for t in ("../../x", "y")]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))  # two tasks, one image name: the task id goes into the name
    r = ls_import(export, LS / "images", tmp_path / "ds")
    assert r.returncode == 1 and "refused image name (task ../../x)" in r.stderr, r.stderr
    assert not (tmp_path / "ds").exists()


def hostile_rle(count: int) -> list[int]:
    """A valid header declaring ``count`` values (8-bit words, 16-bit runs), followed by a few run chunks."""
    bits = f"{count:032b}" + f"{7:05b}" + "1111" * 4
    bits += ("1" + "11" + "1" * 16 + "1" * 8) * 20
    bits += "0" * (-len(bits) % 8)
    return list(int(bits[i : i + 8], 2).to_bytes(1, "big")[0] for i in range(0, len(bits), 8))


def test_a_tiny_rle_declaring_four_billion_values_is_refused_before_allocation(tmp_path):
    rle = hostile_rle(2**32 - 1)
    assert len(rle) < 80
    with pytest.raises(DataError, match="more than its"):
        decode_rle(rle)
    with pytest.raises(DataError, match="region's size needs"):
        decode_rle(rle, expected=320 * 200 * 4)
    brush = {
        "id": "b1",
        "type": "brushlabels",
        "from_name": "tag",
        "to_name": "image",
        "original_width": 65536,
        "original_height": 16384,
        "value": {"format": "rle", "rle": rle, "brushlabels": ["sky"]},
    }
    task = {
        "id": 1,
        "data": {"image": "/data/upload/1/0a1b2c3d-img0.png"},
        "annotations": [
            {"id": 5, "result": [brush, {**brush, "id": "b2", "original_width": 320, "original_height": 200}]}
        ],
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task]))
    r = ls_import(export, LS / "images", tmp_path / "ds", "background=True")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "ds/import_report.json").read_text())
    reasons = [s["reason"] for s in report["skipped_regions"]]
    assert report["regions"]["skipped"] == 2
    assert "larger than any image" in reasons[0] and "region's size needs 256000" in reasons[1]


def tiny_checkpoint(path: Path, **edits) -> Path:
    """A real, loadable checkpoint of the mnist-tiny preset (random weights), with ``edits`` applied."""
    config = REGISTRY.build("model", "mnist-tiny")
    net = build_model(config)
    ckpt = {
        "task": "classify",
        "model_config": config,
        "state_dict": net.state_dict(),
        "names": [str(i) for i in range(10)],
        "imgsz": 28,
        "in_channels": 1,
        "mean": [0.5],
        "std": [0.5],
    }
    for key, value in edits.items():
        if key.startswith("config."):
            ckpt["model_config"] = {**ckpt["model_config"], key.split(".", 1)[1]: value}
        else:
            ckpt[key] = value
    return save_checkpoint(ckpt, path)


def digit_image(tmp_path: Path) -> Path:
    import cv2

    path = tmp_path / "digit.png"
    cv2.imwrite(str(path), np.zeros((28, 28), np.uint8))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"config.num_classes": 10**9}, "num_classes=1000000000"),
        ({"imgsz": 100000}, "imgsz=100000"),
        ({"config.backbone": {"name": "mnist_net", "out_strides": [4], "width": 4096}}, "do not fit its model_config"),
    ],
)
def test_a_checkpoint_declaring_huge_sizes_is_refused(tmp_path, edit, message):
    bad = tiny_checkpoint(tmp_path / "bad.pt", **edit)
    r = run_cli(
        "classify",
        "predict",
        f"model={bad}",
        f"source={digit_image(tmp_path)}",
        "device=cpu",
        f"project={tmp_path / 'runs'}",
    )
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_sound_checkpoint_still_predicts(tmp_path):
    good = tiny_checkpoint(tmp_path / "good.pt")
    r = run_cli(
        "classify",
        "predict",
        f"model={good}",
        f"source={digit_image(tmp_path)}",
        "device=cpu",
        f"project={tmp_path / 'runs'}",
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_onnx_metadata_and_export_imgsz_are_bounded(tmp_path):
    import onnx

    good = tiny_checkpoint(tmp_path / "good.pt")
    r = run_cli("export", f"model={good}", "imgsz=100000")
    assert r.returncode == 2 and "imgsz=100000" in r.stderr and "[1, 8192]" in r.stderr, r.stderr
    r = run_cli("export", f"model={good}")
    assert r.returncode == 0, r.stderr[-2000:]
    model = onnx.load(str(tmp_path / "good.onnx"))
    for prop in model.metadata_props:
        if prop.key == "imgsz":
            prop.value = "100000"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    r = run_cli(
        "classify",
        "predict",
        f"model={tmp_path / 'bad.onnx'}",
        f"source={digit_image(tmp_path)}",
        f"project={tmp_path / 'runs'}",
    )
    assert r.returncode == 1 and "imgsz=100000" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_check_does_not_echo_a_symlinked_system_file(tmp_path, shapes_root):
    ds = tmp_path / "ds"
    shutil.copytree(shapes_root, ds, ignore=shutil.ignore_patterns("classify", "masks", "depth"))
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash and much more private text\n")
    label = sorted((ds / "labels/train").glob("*.txt"))[0]
    label.unlink()
    os.symlink(secret, label)
    r = run_cli("data", "check", f"data={ds / 'data.yaml'}")
    assert r.returncode == 1, r.stdout
    assert "leaves the dataset folder through a symlink" in r.stdout
    assert "not a YOLO row (starts 'root:x:0:0:root:/root:/b'...)" in r.stdout
    assert "private text" not in r.stdout + r.stderr


def test_pack_helper_matches_the_header_layout():
    # the hostile RLE above must be read as declaring what it says (the test would pass vacuously otherwise)
    rle = hostile_rle(12345)
    assert struct.unpack(">I", bytes(rle[:4]))[0] == 12345

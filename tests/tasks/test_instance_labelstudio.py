"""An instance segmenter's predictions as Label Studio pre-annotations: one region per object, and back through
the importer to the same objects (brush: the exact pixels, in instances/)."""

from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as mask_utils

from tests.conftest import TASKS, run_cli, train_tiny
from visionkit import Model
from visionkit.data.instances import image_objects
from visionkit.data.labelstudio.prelabel import default_config


def test_predictions_become_one_region_per_object_and_import_back_exactly(shapes_root, tmp_path_factory, tmp_path):
    model = Model(str(train_tiny("instance", "yolo-n-seg", shapes_root, tmp_path_factory).ckpt_path))
    images = sorted((shapes_root / "images/val").glob("*.jpg"))[:3]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    config = tmp_path / "brush.xml"
    config.write_text(default_config(TASKS["instance"], model.names, "brushlabels"))
    results = model.predict(
        str(folder),
        save_labelstudio=True,
        label_config=str(config),
        conf=0.0,
        max_det=4,
        project=str(tmp_path / "p"),
        verbose=False,
    )
    run = model.save_dir
    tasks = json.loads((run / "labelstudio_tasks.json").read_text())
    regions = [len(t["predictions"][0]["result"]) for t in tasks]
    assert regions == [sum(bool(m.any()) for m in r["_masks"]) for r in results] and sum(regions) > 0
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={run / 'labelstudio_tasks.json'}",
        f"images={folder}",
        f"config={config}",
        "predictions=True",
        f"out={tmp_path / 'ds'}",
        "val=0",
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    for res in results:  # every predicted object is one imported object with exactly its pixels
        image = tmp_path / "ds/images/train" / res["image"].split("/")[-1]
        objects = image_objects(image, (res["width"], res["height"]), len(model.names))
        imported = (
            sorted(mask_utils.decode(objects.rles).transpose(2, 0, 1).astype(bool).tolist())
            if len(objects.rles)
            else []
        )
        predicted = sorted(m.tolist() for m in res["_masks"] if m.any())
        assert len(imported) == len(predicted)
        assert all(np.array_equal(a, b) for a, b in zip(imported, predicted))

    polygon = tmp_path / "poly.xml"
    polygon.write_text(default_config(TASKS["instance"], model.names, "polygonlabels"))
    model.predict(
        str(folder),
        save_labelstudio=True,
        label_config=str(polygon),
        conf=0.0,
        max_det=4,
        project=str(tmp_path / "q"),
        verbose=False,
    )
    tasks = json.loads((model.save_dir / "labelstudio_tasks.json").read_text())
    found = [g for t in tasks for g in t["predictions"][0]["result"]]
    assert found and all(g["type"] == "polygonlabels" and len(g["value"]["points"]) >= 3 for g in found)

"""The Task contract: every registered task (and a task from a plugin package whose output is new: an image-level
regression that subclasses only the base Task) trains, validates, predicts with saved outputs and exports through
the CLI, with nothing task-specific in shared code. A task added later is covered here without writing a new
test."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from tests.conftest import FIXTURES, TINY, run_cli
from visionkit import Model
from visionkit.registry import REGISTRY

PLUGIN_ENV = {"PYTHONPATH": f"{FIXTURES / 'plugins'}:{':'.join(sys.path)}"}
# tiny settings per task where the defaults would be slow (every other task runs with TINY alone)
SETTINGS = {"detect": {"imgsz": 64, "close_mosaic": 0}, "instance": {"imgsz": 64, "close_mosaic": 0}}


def contract_cases():
    cases = [pytest.param(name, None, id=name) for name in REGISTRY.available("task")]
    return cases + [pytest.param("brightness", PLUGIN_ENV, id="plugin-brightness")]


@pytest.mark.parametrize("task, env", contract_cases())
@pytest.mark.slow
def test_every_task_trains_validates_predicts_and_exports(task, env, shapes_root, tmp_path):
    settings = {**TINY, **SETTINGS.get(task, {}), "epochs": 1, "project": tmp_path / "runs", "device": "cpu"}
    kv = [f"{k}={v}" for k, v in settings.items()]
    data = f"data={shapes_root / 'data.yaml'}"

    def cli(*args):
        r = run_cli(*args, cwd=tmp_path, env=env)
        assert r.returncode == 0, f"visionkit {' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r

    cli(task, "train", data, *kv)
    run = tmp_path / "runs" / task / "train"
    best = run / "weights" / "best.pt"
    assert best.is_file() and (run / "weights" / "last.pt").is_file()
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "train_loss" in rows[0]

    cli(task, "val", f"model={best}", data, *kv)
    images = sorted((shapes_root / "images" / "val").glob("*.jpg"))[:3]
    cli(task, "predict", f"model={best}", f"source={shapes_root / 'images' / 'val'}", "save=True", *kv)
    predicted = json.loads((tmp_path / "runs" / task / "predict" / "predictions.json").read_text())
    assert len(predicted) == len(list((shapes_root / "images" / "val").glob("*.jpg")))
    saved = sorted((tmp_path / "runs" / task / "predict").glob("*.jpg"))
    assert {p.stem for p in images} <= {p.stem for p in saved}

    cli("export", f"model={best}")
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.is_file()
    cli(task, "val", f"model={onnx_file}", data, *kv)
    cli(task, "predict", f"model={onnx_file}", f"source={images[0]}", "name=predict_onnx", *kv)
    assert (tmp_path / "runs" / task / "predict_onnx" / "predictions.json").is_file()
    cli(task, "lrfind", data, "num_iter=4", *kv)
    assert (tmp_path / "runs" / task / "lrfind" / "lrfind.png").is_file()
    if env is not None:  # the plugin explains, and the subsystems it has no facet for refuse it clearly
        cli(task, "explain", f"model={best}", f"source={images[0]}", *kv)
        assert (tmp_path / "runs" / task / "explain" / "explanations.json").is_file()
        r = run_cli("export", f"model={best}", "format=mediapipe", cwd=tmp_path, env=env)
        assert r.returncode == 2 and "has no MediaPipe facet" in r.stderr, r.stderr
        r = run_cli("serve", "labelstudio", f"model={best}", "port=1", cwd=tmp_path, env=env)
        assert r.returncode == 2 and "no Label Studio form" in r.stderr, r.stderr
    if env is None:  # the same metrics from the exported file (in-process: the plugin is not importable here)
        common = {**settings, "data": str(shapes_root / "data.yaml")}
        pt, ort = Model(str(best)).val(**common), Model(str(onnx_file)).val(**common)
        fitness = Model(str(best)).task.new_metrics(["x"]).fitness_key
        assert ort[fitness] == pytest.approx(pt[fitness], abs=1e-3), (pt, ort)


def test_a_task_without_validation_metrics_direction_is_respected():
    """Metrics.improved follows higher_is_better both ways (depth's AbsRel improves downwards)."""
    from visionkit.tasks.base import Metrics

    up, down = Metrics(), Metrics()
    down.higher_is_better = False
    assert up.improved(0.5, None) and up.improved(0.6, 0.5) and not up.improved(0.4, 0.5)
    assert down.improved(0.4, 0.5) and not down.improved(0.6, 0.5)


def test_a_plugin_task_runs_from_the_cli_with_its_own_keys(tmp_path, shapes_root):
    r = run_cli("brightness", "train", "l1_gan=2", cwd=tmp_path, env=PLUGIN_ENV)
    assert r.returncode == 2 and "Did you mean 'l1_gain'" in r.stderr, r.stderr
    r = run_cli("cfg", cwd=tmp_path, env=PLUGIN_ENV)
    assert "# --- brightness: keys of this task only" in r.stdout and "l1_gain: 1.0" in r.stdout
    assert "box: 7.5" in r.stdout  # detect's loss gains are declared by detect

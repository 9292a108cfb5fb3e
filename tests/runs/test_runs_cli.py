"""`visionkit runs`: list, show and compare runs; the CLI parses, visionkit.runs does the work."""

from __future__ import annotations

import csv
import shutil

import pytest
from PIL import Image

from tests.conftest import TINY
from visionkit import Model
from visionkit.cli import main
from visionkit.errors import UsageError
from visionkit.runs import compare_runs, list_runs, show_run


@pytest.fixture(scope="module")
def two_runs(logged_run, tmp_path_factory):
    """The logged run and a second, shorter one with another lr0, in one project."""
    project = tmp_path_factory.mktemp("project")
    first = project / "classify" / "train"
    shutil.copytree(logged_run["run"], first)
    data = logged_run["model"].ckpt["data"]
    m = Model("mnist-tiny")
    m.train(**{**TINY, "data": data, "project": str(project), "epochs": 1, "lr0": 0.01, "name": "fast"})
    return project, first, m.save_dir


def _rows(run) -> list[dict]:
    with open(run / "results.csv") as f:
        return list(csv.DictReader(f))


def test_runs_lists_every_run_with_its_best_metric_and_status(two_runs, capsys):
    project, first, second = two_runs
    assert main(["runs", f"project={project}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["run", "task", "model", "data", "epochs", "best", "time", "status"]
    summaries = list_runs(project, verbose=False)
    assert [s["run"] for s in summaries] == ["classify/train", "classify/fast"]
    best = max(float(r["top1"]) for r in _rows(first))
    assert summaries[0]["best_metric"] == "top1" and summaries[0]["best_value"] == pytest.approx(best, abs=1e-6)
    assert [s["epochs"] for s in summaries] == ["2/2", "1/1"]
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    assert "classify/fast" in out and "finished" in out


def test_runs_compare_prints_differences_and_plots_every_curve(two_runs, capsys, tmp_path):
    project, first, second = two_runs
    out_png = tmp_path / "cmp.png"
    assert main(["runs", "compare", "train", str(second), f"project={project}", f"out={out_png}"]) == 0
    text = capsys.readouterr().out
    lr_line = next(line for line in text.splitlines() if line.startswith("lr0"))
    assert lr_line.split()[1:] == ["null", "0.01"]
    assert "epochs" in text and "top1" in text and "name" not in text.split("metrics:")[0]
    result = compare_runs("train", "fast", project=project, out=out_png, verbose=False)
    # what the two runs were given differently (the first also had plots and TensorBoard on, in another project)
    assert set(result["settings"]) == {"epochs", "lr0", "plots", "tensorboard", "project"}
    assert result["settings"]["lr0"] == [None, 0.01] and result["settings"]["epochs"] == [2, 1]
    assert result["metrics"]["epochs"] == [2, 1]
    # every results.csv column of every run is plotted, with the logged values
    for label, run in zip(result["labels"], (first, second)):
        rows = _rows(run)
        x, y = result["curves"]["val_loss"][label]
        assert x == [int(r["epoch"]) for r in rows]
        assert y == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-9)
    with Image.open(out_png) as im:
        assert im.size[0] >= 4 * 300  # one panel per metric, four to a row
    assert result["plot"] == out_png


def test_runs_show_prints_metrics_table_and_files(two_runs, capsys):
    project, first, _ = two_runs
    assert main(["runs", "show", "classify/train", f"project={project}"]) == 0
    text = capsys.readouterr().out
    info = show_run("train", project=project, verbose=False)
    assert "triangle" in info["table"] and "triangle" in text
    assert "weights/best.pt" in info["files"] and "report.html" in info["files"]
    assert info["settings"]["epochs"] == 2 and "epochs=2" in text.split("settings (not default): ")[1]
    assert "plots=" not in text  # true is the default: not shown


def test_runs_errors_name_what_exists(two_runs):
    project, *_ = two_runs
    with pytest.raises(UsageError, match="classify/fast"):
        show_run("nope", project=project)
    with pytest.raises(UsageError, match="at least two"):
        compare_runs("train", project=project)
    with pytest.raises(UsageError, match="not a folder"):
        list_runs(project / "missing")
    with pytest.raises(UsageError, match="project="):
        main(["runs", "show", "train", f"project={project}", "bogus=1"])
    with pytest.raises(UsageError, match="usage"):
        main(["runs", "delete", "train"])

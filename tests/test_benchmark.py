"""visionkit benchmark: one model in each format, with its file size, metric and latency, side by side."""

import csv
import json

import pytest

from tests.conftest import TINY, run_cli
from visionkit import Model
from visionkit.errors import UsageError


@pytest.fixture(scope="module")
def classifier(shapes_root, tmp_path_factory):
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(shapes_root / "data.yaml"), project=str(tmp_path_factory.mktemp("cls")), epochs=1)
    return m


def test_each_format_gets_its_size_metric_and_latency(classifier, tmp_path):
    from visionkit.benchmark import COLUMNS, benchmark

    rows = benchmark(model=str(classifier.ckpt_path), formats="pt,onnx,onnx-int8", calls=3, project=str(tmp_path),
                     verbose=False)  # fmt: skip
    assert [r["format"] for r in rows] == ["pt", "onnx", "onnx-int8"]
    assert all(not r["error"] for r in rows), rows
    files = [r["file"] for r in rows]
    assert files[0] == str(classifier.ckpt_path) and files[1].endswith("best.onnx") and files[2].endswith("_int8.onnx")
    assert rows[2]["size_mb"] < rows[1]["size_mb"]  # int8 weights
    for r in rows:
        assert r["metric"] == "top1" and 0.0 <= r["value"] <= 1.0
        assert 0 < r["latency_ms"] <= r["p95_ms"]
    # the .pt's metric is what val gives (same data, same size, batch 1); the float ONNX file agrees with it
    want = classifier.val(batch=1, verbose=False, plots=False, project=str(tmp_path / "v"))["top1"]
    assert rows[0]["value"] == pytest.approx(want, abs=1e-4)
    assert rows[1]["value"] == pytest.approx(rows[0]["value"], abs=0.13)  # at most one image of 8 differs
    out = tmp_path / "classify" / "benchmark"
    with open(out / "benchmark.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == COLUMNS and [t["format"] for t in table] == ["pt", "onnx", "onnx-int8"]
    assert float(table[1]["latency_ms"]) == rows[1]["latency_ms"]
    assert json.loads((out / "benchmark.json").read_text()) == rows


def test_a_failing_format_says_why_and_the_others_go_on(classifier, tmp_path, monkeypatch):
    from visionkit import benchmark as bench

    monkeypatch.setitem(bench.FORMATS, "onnx", {"format": "onnx", "opset": 30})  # no exporter writes opset 30 yet
    rows = bench.benchmark(model=str(classifier.ckpt_path), formats="onnx,pt", calls=2, project=str(tmp_path),
                           verbose=False)  # fmt: skip
    assert rows[0]["format"] == "onnx" and "ExportError" in rows[0]["error"] and "opset 30" in rows[0]["error"]
    assert rows[0]["latency_ms"] is None
    assert rows[1]["format"] == "pt" and not rows[1]["error"] and rows[1]["latency_ms"] > 0
    assert "failed: ExportError" in bench.table(rows)


def test_bad_benchmark_input(classifier, tmp_path):
    from visionkit.benchmark import benchmark

    with pytest.raises(UsageError, match=r"formats='onx'.*choose from pt, onnx, onnx-int8"):
        benchmark(model=str(classifier.ckpt_path), formats="onx", project=str(tmp_path))
    with pytest.raises(UsageError, match="needs model=PATH.pt"):
        benchmark(project=str(tmp_path))
    with pytest.raises(UsageError, match="calls"):
        benchmark(model=str(classifier.ckpt_path), calls=0, project=str(tmp_path))
    assert not (tmp_path / "classify").exists()  # refused before any run folder is made


def test_cli_benchmark_prints_the_table(classifier, tmp_path):
    r = run_cli("benchmark", f"model={classifier.ckpt_path}", "formats=pt,onnx", "calls=2", f"project={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ms (median)" in r.stdout and "\nonnx " in r.stdout and "benchmark.csv" in r.stdout
    r = run_cli("benchmark", f"model={classifier.ckpt_path}", "formats=bogus")
    assert r.returncode == 2 and "choose from" in r.stderr

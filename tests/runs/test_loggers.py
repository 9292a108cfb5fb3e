"""Run loggers: what TensorBoard and MLflow received, read back with their own readers (never by grepping files),
a failing logger, a dead tracking server, a resumed run continuing its MLflow run, and a real `mlflow server`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY, free_port
from visionkit import Model
from visionkit.registry import REGISTRY
from visionkit.runs.loggers.base import RunLogger


def _csv(run: Path) -> list[dict[str, float]]:
    with open(run / "results.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_has_every_results_column_lrs_time_images_graph(logged_run):
    run, rows = logged_run["run"], _csv(logged_run["run"])
    acc = _accumulator(run)
    tags = acc.Tags()
    for key in rows[0]:
        if key == "epoch":
            continue
        events = acc.Scalars(key)
        assert [e.step for e in events] == [1, 2], key
        assert [e.value for e in events] == pytest.approx([r[key] for r in rows], rel=1e-5, abs=1e-7), key
    # every parameter group's learning rate; the first is the one results.csv shows
    assert [e.value for e in acc.Scalars("lr_pg0")] == pytest.approx([r["lr"] for r in rows], rel=1e-5)
    assert "lr_pg1" in tags["scalars"]  # weights with decay, biases/norms without: two groups
    # the time split: the training step of one epoch fits inside that epoch's wall time
    steps = acc.Scalars("time/step")
    assert len(steps) == 2
    for e, r in zip(steps, rows):
        assert 0 < e.value <= r["epoch_s"] + 1e-3
    assert {"time/data", "time/val", "time/save"} <= set(tags["scalars"])
    # the validation plot as an image, the same size as the PNG on disk
    (img,) = acc.Images("confusion_matrix")
    with Image.open(run / "confusion_matrix.png") as im:
        assert (img.width, img.height) == im.size
    assert img.step == 2
    assert tags["graph"] and len(acc.Graph().node) > 5


def test_tensorboard_hparams_hold_the_settings_and_final_metrics(logged_run):
    from tbparse import SummaryReader

    reader = SummaryReader(str(logged_run["run"] / "hparams"))
    hp = dict(zip(reader.hparams["tag"], reader.hparams["value"]))
    assert hp["epochs"] == 2 and hp["imgsz"] == 32 and hp["optimizer"] == "auto" and hp["lr0"] == "null"
    finals = dict(zip(reader.scalars["tag"], reader.scalars["value"]))
    assert finals["final/top1"] == pytest.approx(logged_run["metrics"]["top1"], rel=1e-6)
    assert finals["final/val_loss"] == pytest.approx(logged_run["metrics"]["val_loss"], rel=1e-6)


def test_mlflow_file_store_has_params_metrics_tags_and_artifacts(logged_run, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = logged_run["run"]
    record = json.loads((run_dir / "mlflow.json").read_text())
    assert record["tracking_uri"] == logged_run["uri"]
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.tags["task"] == "classify" and run.data.tags["model"] == "mnist_net/linear"
    assert run.data.tags["data"].endswith("cls")
    assert json.loads(run.data.params["epochs"]) == 2 and json.loads(run.data.params["lr0"]) is None
    rows = _csv(run_dir)
    for key in ("train_loss", "val_loss", "top1", "lr"):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2], key
        assert [m.value for m in history] == pytest.approx([r[key] for r in rows], rel=1e-5), key
    assert run.data.metrics["final/top1"] == pytest.approx(logged_run["metrics"]["top1"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"args.yaml", "results.csv", "results.png", "confusion_matrix.png", "report.html", "weights"} <= names
    best = Path(client.download_artifacts(run.info.run_id, "weights/best.pt", str(tmp_path)))
    a, b = torch.load(best, weights_only=True), torch.load(run_dir / "weights/best.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])


class Raises(RunLogger):
    """A logger that breaks at its first epoch (a full disk, a server gone)."""

    name = "test_raises"
    calls: list[str] = []

    @classmethod
    def wanted(cls, args) -> bool:
        return True

    def train_start(self, run) -> None:
        Raises.calls.append("train_start")

    def epoch_end(self, epoch, row, lrs, times) -> None:
        Raises.calls.append("epoch_end")
        raise OSError(28, "No space left on device")


@pytest.fixture
def raising_logger():
    REGISTRY.register("logger", "test_raises")(Raises)
    Raises.calls.clear()
    yield Raises
    REGISTRY._items["logger"].pop("test_raises", None)


def test_a_logger_that_raises_warns_once_and_training_goes_on(raising_logger, classify_dir, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = Model("mnist-tiny")
        m.train(**{**TINY, "data": str(classify_dir), "project": str(tmp_path), "epochs": 3})
    ours = [w for w in caught if "test_raises" in str(w.message)]
    assert len(ours) == 1 and "No space left" in str(ours[0].message)
    assert Raises.calls == ["train_start", "epoch_end"]  # switched off after the failure
    assert len(_csv(m.save_dir)) == 3 and (m.save_dir / "weights/best.pt").is_file()
    assert json.loads((m.save_dir / "run.json").read_text())["status"] == "finished"


def test_mlflow_at_a_dead_port_warns_once_and_training_goes_on(classify_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    port = free_port()  # bound and released: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = Model("mnist-tiny")
        m.train(**{**TINY, "data": str(classify_dir), "project": str(tmp_path), "epochs": 2})
    ours = [w for w in caught if "logger 'mlflow'" in str(w.message)]
    assert len(ours) == 1 and str(port) in str(ours[0].message)
    assert len(_csv(m.save_dir)) == 2 and not (m.save_dir / "mlflow.json").exists()
    assert time.time() - t0 < 120  # no minutes of retries against a server that is not there


def test_mlflow_asked_for_but_missing_is_a_clear_error_before_any_output(classify_dir, tmp_path, monkeypatch):
    import importlib.util

    from visionkit.errors import UsageError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(UsageError, match=r"visionkit\[mlflow\]"):
        Model("mnist-tiny").train(**{**TINY, "data": str(classify_dir), "project": str(tmp_path), "mlflow": True})
    assert not (tmp_path / "classify").exists()


def test_resume_continues_the_same_mlflow_run_and_tensorboard_steps(classify_dir, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    common = {**TINY, "data": str(classify_dir), "project": str(tmp_path), "epochs": 3, "mlflow": True}
    stopped = Model("mnist-tiny")
    stopped.add_callback("on_epoch_end", lambda t: setattr(t, "stop", t.epoch == 1))
    stopped.train(**{**common, "tensorboard": True})
    run_dir = stopped.save_dir
    first = json.loads((run_dir / "mlflow.json").read_text())
    assert first["tracking_uri"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"  # the default local store
    Model("mnist-tiny").train(resume=str(run_dir / "weights/last.pt"), verbose=False)
    assert json.loads((run_dir / "mlflow.json").read_text()) == first
    client = MlflowClient(tracking_uri=first["tracking_uri"])
    runs = client.search_runs([first["experiment_id"]])
    assert [r.info.run_id for r in runs] == [first["run_id"]]  # one MLflow run, continued
    history = sorted(client.get_metric_history(first["run_id"], "train_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([r["train_loss"] for r in _csv(run_dir)], rel=1e-5)
    assert client.get_run(first["run_id"]).info.status == "FINISHED"
    acc = _accumulator(run_dir)
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2, 3]


def test_loggers_of_a_rank_other_than_0_log_nothing(classify_dir, tmp_path, monkeypatch):
    """Under DDP the trainer builds Loggers(enabled=rank == 0): a non-zero rank starts no logger at all."""
    from visionkit.cfg import Settings, load_defaults
    from visionkit.engine.loggers import Loggers

    args = Settings({**load_defaults(), "mlflow": True})
    assert Loggers(args, enabled=False).active == []
    assert {"report", "tensorboard", "mlflow"} <= set(Loggers(args, enabled=True).names)


def _start_mlflow_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"mlflow server did not answer in 180 s: {(tmp_path / 'server.log').read_text()[-2000:]}")


@pytest.mark.slow
def test_a_real_mlflow_server_with_sqlite_receives_the_run(classify_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    proc, url = _start_mlflow_server(tmp_path)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "vk-server-test")
        m = Model("mnist-tiny")
        metrics = m.train(**{**TINY, "data": str(classify_dir), "project": str(tmp_path / "runs"), "epochs": 2})
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name("vk-server-test")
        (run,) = client.search_runs([exp.experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["task"] == "classify"
        assert json.loads(run.data.params["epochs"]) == 2
        history = sorted(client.get_metric_history(run.info.run_id, "top1"), key=lambda x: x.step)
        assert [h.step for h in history] == [1, 2]
        assert run.data.metrics["final/top1"] == pytest.approx(metrics["top1"])
        weights = {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
        assert weights == {"weights/best.pt"}
        got = Path(client.download_artifacts(run.info.run_id, "weights/best.pt", str(tmp_path)))
        assert got.read_bytes() == (m.save_dir / "weights/best.pt").read_bytes()
        # an export of that run's checkpoint joins the same MLflow run
        onnx = m.export(format="onnx")
        exported = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
        assert exported == {f"export/{onnx.name}"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_only_rank_0_logs_in_a_two_process_run(classify_dir, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tests.conftest import run_cli

    args = ["data=" + str(classify_dir), f"project={tmp_path}", "imgsz=32", "batch=8", "device=cpu", "workers=0"]
    r = run_cli("classify", "train", *args, "epochs=2", "nproc=2", "plots=false", "tensorboard=true", "mlflow=true")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "classify/train"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # one writer: rank 0's
    acc = _accumulator(run_dir)
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "visionkit-classify"]
    (run,) = client.search_runs([exp.experiment_id])
    assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "top1"), key=lambda m: m.step)] == [1, 2]

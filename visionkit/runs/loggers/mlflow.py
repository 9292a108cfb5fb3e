"""MLflow: settings as params, every results.csv column per epoch as metrics (step = epoch), the plots, best.pt and
report as artifacts, tags for task, model and data. A run continued with ``resume`` continues the same MLflow run:
its id is kept in the run folder (mlflow.json).

On with ``mlflow=True`` or when ``MLFLOW_TRACKING_URI`` is set; the tracking URI is that variable, else a local
store: SQLite in PROJECT/mlflow.db with artifacts in PROJECT/mlartifacts (MLflow's file store is in maintenance
mode; a ``file:`` URI still works with ``MLFLOW_ALLOW_FILE_STORE=true``). The experiment is
``MLFLOW_EXPERIMENT_NAME``, else visionkit-TASK.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from visionkit.errors import UsageError
from visionkit.registry import register
from visionkit.runs.loggers.base import RunLogger, RunStart

RUN_FILE = "mlflow.json"  # in the run folder: the tracking URI, experiment and run id a resumed run continues
PARAM_MAX = 6000  # MLflow's longest param value
BATCH = 100  # MLflow takes at most 100 params per log_batch call


def mlflow_key(key: str) -> str:
    """A metric or param name MLflow accepts (letters, digits, _ - . space : /); anything else becomes _."""
    return re.sub(r"[^\w\-. :/]", "_", str(key))


def tracking_uri(project: str | Path) -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store in PROJECT/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project).resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (ConnectionError) when an http(s) tracking server does not answer, instead of MLflow's minutes of
    retries."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"the MLflow server {uri} does not answer ({e})") from e


@register("logger", "mlflow")
class MLflowLogger(RunLogger):
    """MLflow tracking (mlflow=True or MLFLOW_TRACKING_URI set; pip install 'visionkit[mlflow]')."""

    name = "mlflow"

    @classmethod
    def wanted(cls, args) -> bool:
        on = bool(args.mlflow) or bool(os.environ.get("MLFLOW_TRACKING_URI"))
        if on and importlib.util.find_spec("mlflow") is None:
            raise UsageError(
                "mlflow=True (or MLFLOW_TRACKING_URI) but mlflow is not installed; pip install 'visionkit[mlflow]' "
                "or pass mlflow=False and unset MLFLOW_TRACKING_URI"
            )
        return on

    def __init__(self):
        self.client = None
        self.run_id: str | None = None
        self.save_dir: Path | None = None

    def train_start(self, run: RunStart) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(run.settings["project"])
        check_reachable(uri)
        self.save_dir = run.save_dir
        self.client = MlflowClient(tracking_uri=uri)
        record = run.save_dir / RUN_FILE
        previous = json.loads(record.read_text()) if run.resumed and record.is_file() else None
        if previous and previous.get("tracking_uri") == uri:  # resume: the same MLflow run goes on
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"visionkit-{run.task}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            exp_id = exp.experiment_id
        else:  # the local store keeps artifacts next to it, not in the working directory (MLflow's default)
            local = None if os.environ.get("MLFLOW_TRACKING_URI") else Path(run.settings["project"]).resolve()
            where = (local / "mlartifacts").as_uri() if local is not None else None
            exp_id = self.client.create_experiment(name, artifact_location=where)
        from visionkit.version import __version__

        tags = {"task": run.task, "model": run.model, "data": run.data, "visionkit": __version__}
        created = self.client.create_run(exp_id, run_name=run.save_dir.name, tags=tags)
        self.run_id = created.info.run_id
        # the run's id next to its weights, so `resume` continues this MLflow run
        tmp = record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"tracking_uri": uri, "experiment_id": exp_id, "run_id": self.run_id}, indent=2))
        tmp.replace(record)
        params = [Param(mlflow_key(k), json.dumps(v)[:PARAM_MAX]) for k, v in run.settings.items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag("save_dir", str(run.save_dir.resolve()))])

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(mlflow_key(k), float(v), now, step)
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        for i in range(0, len(batch), 1000):  # MLflow's limit per call
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def epoch_end(self, epoch: int, row: dict[str, float], lrs: list[float], times: dict[str, float]) -> None:
        values = {k: v for k, v in row.items() if k != "epoch"}
        values.update({f"lr_pg{i}": lr for i, lr in enumerate(lrs)})
        values.update({f"time/{k}": s for k, s in times.items()})
        self._metrics(values, epoch)

    def train_end(
        self, metrics: dict[str, float], artifacts: list[Path], times: dict[str, float], details: dict[str, Any]
    ) -> None:
        self._metrics({f"final/{k}": v for k, v in metrics.items()}, 0)
        for path in artifacts:
            folder = "weights" if path.suffix == ".pt" else None
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        report = self.save_dir / "report.html"
        if report.is_file():
            self.client.log_artifact(self.run_id, str(report))

    @classmethod
    def exported(cls, run_dir: Path, files: list[Path]) -> None:
        log_exported(run_dir, files)

    def close(self, failed: bool) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
            self.run_id = None


def log_exported(run_dir: Path, files: list[Path]) -> bool:
    """Add exported files to the MLflow run of ``run_dir`` (its mlflow.json); False when the run has none."""
    record = Path(run_dir) / RUN_FILE
    if not record.is_file() or importlib.util.find_spec("mlflow") is None:
        return False
    from mlflow.tracking import MlflowClient

    info = json.loads(record.read_text())
    check_reachable(info["tracking_uri"])
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    for f in files:
        client.log_artifact(info["run_id"], str(f), artifact_path="export")
    return True

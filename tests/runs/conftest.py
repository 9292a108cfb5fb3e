"""One real training run with every built-in logger on (TensorBoard, MLflow on a local file store, the report),
shared by the tests that read what was logged back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import pytest

from tests.conftest import TINY


@pytest.fixture(scope="session")
def logged_run(shapes_root, tmp_path_factory):
    """Two epochs of the tiny classifier with plots, TensorBoard and MLflow on a local file store (PROJECT/mlruns;
    the default local store, SQLite, is what the resume test uses)."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from visionkit import Model

    data = tmp_path_factory.mktemp("cls") / "cls"
    shutil.copytree(shapes_root / "classify", data)
    project = tmp_path_factory.mktemp("logged") / "runs"
    uri = (project.parent / "mlruns").as_uri()
    m = Model("mnist-tiny")
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}):
        metrics = m.train(
            **{**TINY, "data": str(data), "project": str(project), "epochs": 2, "plots": True, "tensorboard": True}
        )
    return {"model": m, "metrics": metrics, "run": Path(m.save_dir), "project": project, "uri": uri}

"""The Label Studio ML backend's work, apart from HTTP: one model, loaded once, pre-labels tasks in batches.

Protocol (Label Studio 1.x): ``/setup`` gets the project's labeling config (``schema``), the server's address
(``hostname``) and a token (``access_token``), and answers the ``model_version``; ``/predict`` gets full tasks and
answers one ``{"result": [regions], "score", "model_version"}`` per task, in order.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from visionkit.data.labelstudio.images import same_origin
from visionkit.data.labelstudio.prelabel import RegionWriter, Target, check_task, model_version, plan
from visionkit.data.labelstudio.task_images import TaskImages
from visionkit.errors import UsageError, VisionkitError

log = logging.getLogger("visionkit.serve")


class BadRequest(VisionkitError):
    """A request body the protocol does not allow: answered with HTTP 400 and this message."""


class PreLabeler:
    """``setup(body)`` and ``predict(body)`` of the ML backend protocol, for one visionkit model (a .pt, .onnx or
    .tflite). Predictions run one batch at a time under a lock (one model in memory); images are fetched per
    batch, so a request of any length holds at most ``batch`` decoded images."""

    def __init__(
        self,
        model: str | Path,
        conf: float | None = None,
        device: str | None = None,
        batch: int = 8,
        names_map=None,
        images: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        imgsz: int | None = None,
        timeout: float = 30.0,
        allow_hosts=None,
    ):
        from visionkit.api import Model
        from visionkit.serve.fetch import Fetcher

        path = Path(model)
        if not path.is_file():
            raise UsageError(
                f"model '{model}' does not exist; give a trained checkpoint (best.pt) or an exported file (.onnx, "
                ".xml, .tflite)"
            )
        self.model = Model(str(path))
        self.task = self.model.task
        self.names = list(self.model.names or [])
        self.model_version = model_version(path)
        if conf is not None and "conf" not in self.task.keys:  # one server command line for every kind of model
            log.warning(
                "conf=%s does not apply to a %s model (it has no confidence threshold); ignored", conf, self.task.name
            )
            conf = None
        self.overrides = {k: v for k, v in {"conf": conf, "device": device, "imgsz": imgsz}.items() if v is not None}
        self.batch = max(1, int(batch))
        self.names_map = names_map
        self.images_dir = images
        self.url = url or os.environ.get("LABEL_STUDIO_URL")
        self.token = token or os.environ.get("LABEL_STUDIO_API_KEY")
        self.timeout = timeout
        self.fetcher = Fetcher(allow_hosts)  # http(s) images: Label Studio and allow_hosts only, no private addresses
        self.projects: dict[str, dict[str, Any]] = {}  # project uid → what /setup said
        self._lock = threading.Lock()
        self.busy = False
        if self.images_dir is not None:
            TaskImages(images_dir=self.images_dir)  # a missing folder fails at start, not per task
        check_task(self.task)  # a depth model has no region type: refused at start, not at /setup
        self.model.infer([])  # loads the network (and an exported file's runtime) before the first request

    # -- protocol ----------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": "visionkit",
            "task": self.task.name,
            "model_version": self.model_version,
            "busy": self.busy,
        }

    def setup(self, body: Any) -> dict[str, Any]:
        body = _object(body, "/setup")
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise BadRequest("/setup needs 'schema': the project's labeling config (XML)")
        target = plan(self.task, self.names, schema, self.names_map)  # UsageError names what does not fit
        project = str(body.get("project", ""))
        self.projects[project] = {"hostname": body.get("hostname"), "access_token": body.get("access_token")}
        if target.unused:
            log.info(
                "project %s: model classes without a label in the config get no regions: %s",
                project,
                ", ".join(target.unused),
            )
        return {"model_version": self.model_version}

    def predict(self, body: Any) -> dict[str, Any]:
        body = _object(body, "/predict")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("/predict needs 'tasks': a list of Label Studio tasks (objects with 'data')")
        config = body.get("label_config")
        project = str(body.get("project", ""))
        if not isinstance(config, str) or not config.strip():
            raise BadRequest("/predict needs 'label_config': the project's labeling config (XML)")
        target = plan(self.task, self.names, config, self.names_map)
        loader = self._images(project)
        results: list[dict[str, Any]] = []
        for start in range(0, len(tasks), self.batch):
            results += self._batch(tasks[start : start + self.batch], target, loader)
        return {"results": results, "model_version": self.model_version}

    # -- work --------------------------------------------------------------------------------------------------
    def _images(self, project: str) -> TaskImages:
        """Where images come from: images=, else a Label Studio server with its token. The address and the token
        come as a pair, from the same place: url=/token= (or LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY), else what
        /setup said; a token set here is never sent to an address /setup names."""
        seen = self.projects.get(project) or {}
        if self.url:
            url = self.url
            token = self.token or (seen.get("access_token") if same_origin(str(seen.get("hostname")), url) else None)
        else:
            url, token = seen.get("hostname"), seen.get("access_token")
        headers = {"Authorization": f"Token {token}"} if token else {}
        return TaskImages(
            base_url=url, headers=headers, images_dir=self.images_dir, timeout=self.timeout, fetch=self.fetcher.fetch
        )

    def _batch(self, tasks: list[dict], target: Target, loader: TaskImages) -> list[dict[str, Any]]:
        """One batch: each task gets its regions, or an empty result and an 'error' saying why (its image could
        not be had, or the model failed on it). Images are fetched outside the model lock."""
        out: list[dict[str, Any] | None] = [None] * len(tasks)
        images, where = [], []
        for i, task in enumerate(tasks):
            try:
                images.append(loader.load(task, target.data_key))
                where.append(i)
            except Exception as e:  # any failure stays this task's: the others still get their regions
                out[i] = self._failed(task, e)
        writer = RegionWriter(target)
        with self._lock:
            self.busy = True
            try:
                predictions = self._infer(images, [tasks[i] for i in where])
            finally:
                self.busy = False
        for i, prediction in zip(where, predictions, strict=True):
            out[i] = (
                prediction
                if "error" in prediction
                else {**writer.prediction(prediction), "model_version": self.model_version}
            )
        log.info(
            "pre-labelled %d task(s): %s",
            len(images),
            ", ".join(f"{n} {k}" for k, n in writer.written.items()) or "no regions",
        )
        return out  # type: ignore[return-value]

    def _infer(self, images: list, tasks: list[dict]) -> list[dict[str, Any]]:
        """The model on a batch; when the batch fails, image by image, so one bad image fails only its task."""
        if not images:
            return []
        try:
            return self.model.infer(images, **self.overrides)
        except Exception as e:
            if len(images) == 1:
                return [self._failed(tasks[0], e)]
            log.warning(
                "a batch of %d failed (%s: %s); predicting its images one by one", len(images), type(e).__name__, e
            )
            return [p for img, task in zip(images, tasks) for p in self._infer([img], [task])]

    def _failed(self, task: dict, error: Exception) -> dict[str, Any]:
        message = str(error) if isinstance(error, VisionkitError) else f"{type(error).__name__}: {error}"
        if not message.startswith("task "):
            message = f"task {task.get('id')}: {message}"
        log.warning("%s", message)
        return {"result": [], "score": 0.0, "model_version": self.model_version, "error": message}


def _object(body: Any, route: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{route} needs a JSON object body, got {type(body).__name__}")
    return body

"""A .tflite file run by MediaPipe Tasks, callable like the network it came from: it takes the same normalised
(B, C, H, W) batch the other backends take, hands MediaPipe the uint8 RGB images behind it, and returns the
tensors the task's post-processing reads as it reads an exported ONNX file's. Which MediaPipe Task runs the file
and how its results become those tensors is the file's kind's facet (visionkit.runtime.mediapipe_kind, found in
the registry by the ``kind`` the file's visionkit record names); this module names no task and no kind."""

from __future__ import annotations

import atexit
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import CheckpointError, RegistryError, UsageError
from visionkit.limits import DEFAULT_IN_CHANNELS, MAX_CLASSES, MAX_IMGSZ, MAX_IN_CHANNELS
from visionkit.registry import REGISTRY, register
from visionkit.runtime.base import ExportedModel
from visionkit.runtime.mediapipe_kind import MediaPipeKind

# Every MediaPipe Task still open, held here until it is closed. A Task must never be left to the cyclic garbage
# collector: the collector frees the Task's executor in the same pass, its worker thread leaves, and the close()
# that the Task's (or its runner's) finaliser then submits waits forever for a thread that is gone (a test run hung
# this way inside an unrelated allocation). Held here, a Task's executor lives until close() has run.
_LIVE: dict[int, Any] = {}
# Tasks whose runner was freed without close(): a finaliser may run anywhere (inside a lock the executor needs),
# so it only queues the Task; the next runner made or run, or the exit hook, closes it.
_ORPHANS: list[Any] = []
_CLOSE_AT_EXIT: list[bool] = []


def close_orphans() -> None:
    """Close the Tasks whose runners were freed unclosed (called where MediaPipe may be entered safely)."""
    while _ORPHANS:
        try:
            task = _ORPHANS.pop()
        except IndexError:  # another thread took the last one
            return
        _LIVE.pop(id(task), None)
        try:
            task.close()
        except Exception as e:  # not the caller's problem: its own Task is a different one
            warnings.warn(f"closing an unused MediaPipe Task failed: {type(e).__name__}: {e}", stacklevel=2)


def _close_all() -> None:
    """Close the Tasks still open at exit while MediaPipe's dispatcher threads still run (each Task's own __del__
    would otherwise print an error at shutdown)."""
    _ORPHANS.clear()
    while _LIVE:
        _, task = _LIVE.popitem()
        task.close()


def _register_close_at_exit() -> None:
    # threading's exit hooks run before atexit's, in reverse order of registration: registered after MediaPipe
    # made its executor, this one runs first
    if not _CLOSE_AT_EXIT:
        register = getattr(threading, "_register_atexit", atexit.register)
        register(_close_all)
        _CLOSE_AT_EXIT.append(True)


class TaskRunner:
    """One MediaPipe Task for a file: ``run(rgb)`` on one uint8 (H, W, 3) image → the dict of NumPy arrays its
    kind's facet reads (``kind.run``)."""

    def __init__(
        self,
        path: Path,
        kind: MediaPipeKind,
        names: list[str],
        score_threshold: float = 0.0,
        max_results: int = -1,
        video: bool = False,
    ):
        from mediapipe.tasks.python import BaseOptions, vision

        from visionkit.export.tflite_metadata import writers

        writers()  # registers the metadata helper MediaPipe's Python package lacks, before any metadata read
        close_orphans()
        self.kind, self.num_classes, self.video = kind, len(names), video
        # VIDEO mode: MediaPipe wants each frame's timestamp, strictly increasing within one Task
        mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
        self.frames = 0
        self.class_ids = {name: i for i, name in enumerate(names)}  # MediaPipe may name a category without its index
        base = BaseOptions(model_asset_path=str(path))
        try:
            self.task = kind.create(vision, base, mode, score_threshold, max_results)
        except (RuntimeError, ValueError) as e:
            raise CheckpointError(f"MediaPipe cannot load '{path}' as a {kind.name}: {str(e).splitlines()[0]}") from e
        _LIVE[id(self.task)] = self.task
        _register_close_at_exit()

    def run(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> dict[str, np.ndarray]:
        """One image; a VIDEO-mode runner needs the frame's ``timestamp_ms`` (strictly increasing)."""
        import mediapipe as mp

        if self.video and timestamp_ms is None:
            raise UsageError("a VIDEO-mode MediaPipe Task needs each frame's timestamp_ms")
        if _ORPHANS:
            close_orphans()
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        self.frames += 1
        return self.kind.run(self.task, image, timestamp_ms if self.video else None, rgb.shape[:2], self)

    def close(self) -> None:
        task, self.task = getattr(self, "task", None), None
        if task is not None:
            _LIVE.pop(id(task), None)
            task.close()

    def __del__(self, _orphans=_ORPHANS):  # the list itself: at interpreter exit the module's names may be None
        # no MediaPipe call from a finaliser (see _LIVE): the Task is closed later, from ordinary code
        task, self.task = getattr(self, "task", None), None
        if task is not None:
            _orphans.append(task)


def kind_named(name: str) -> MediaPipeKind:
    """The registered MediaPipe facet called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return REGISTRY.build("mediapipe_kind", str(name))
    except RegistryError:
        raise ValueError(f"kind '{name}' is not one of {', '.join(REGISTRY.available('mediapipe_kind'))}") from None


@register("runtime", "mediapipe")
class MediaPipeModel(ExportedModel):
    """``MediaPipeModel("best.tflite")(x)`` → outputs the task post-processes. ``meta`` holds what the file's
    visionkit record says (task, names, imgsz, in_channels, mean, std, ...)."""

    suffix = ".tflite"  # the files this backend runs

    fixed_size = True  # a .tflite file takes its own input size; MediaPipe stretches other sizes to it

    def __init__(self, path: str | Path, overrides: dict[str, Any] | None = None):
        from visionkit.export.tflite_convert import require_edge_packages
        from visionkit.export.tflite_metadata import has_mediapipe_metadata, read_record

        require_edge_packages()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"TFLite file '{path}' does not exist")
        overrides = overrides or {}
        try:
            record = read_record(path)
            has_metadata = has_mediapipe_metadata(path)
        except Exception as e:  # not a flatbuffer, or a truncated one
            raise CheckpointError(f"'{path}' is not a readable .tflite file: {type(e).__name__}: {e}") from e
        if not has_metadata:
            raise CheckpointError(
                f"'{path}' has no TFLite model metadata, which MediaPipe Tasks need (labels, input "
                f"normalisation); export it with `visionkit export model=best.pt format=mediapipe`"
            )
        if record is None:
            record = self._foreign_record(path, overrides)
        try:
            self.meta, self.kind, self.size = self._meta(record, overrides, path)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"'{path}' has a malformed visionkit record: {type(e).__name__}: {e}") from e
        self.path = path
        self.record = record
        self._runner: TaskRunner | None = None

    @staticmethod
    def _foreign_record(path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
        """A MediaPipe model not written by visionkit: usable with task= and names=."""
        missing = [k for k in ("task", "names") if not overrides.get(k)]
        if missing:
            raise UsageError(
                f"'{path}' was not exported by visionkit (no visionkit record); pass "
                f"{', '.join(k + '=' for k in missing)} to use it anyway"
            )
        from ai_edge_litert import interpreter as tfl

        shape = [int(d) for d in tfl.Interpreter(model_path=str(path)).get_input_details()[0]["shape"]]
        task = REGISTRY.build("task", str(overrides["task"]))
        if task.mediapipe_kind is None:
            with_kind = [n for n in REGISTRY.available("task") if REGISTRY.build("task", n).mediapipe_kind]
            raise UsageError(f"task={overrides['task']} has no MediaPipe Task; use one of {', '.join(with_kind)}")
        return {
            "task": task.name,
            "kind": task.mediapipe_kind,
            "imgsz": shape[1:3],
            "in_channels": 3,
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "metadata": {},
        }

    @staticmethod
    def _meta(record: dict[str, Any], overrides: dict[str, Any], path: Path):
        if overrides.get("task") and record.get("task") and overrides["task"] != record["task"]:
            raise UsageError(
                f"'{path}' is a {record['task']} model, not {overrides['task']}; run `visionkit "
                f"{record['task']} ...` with it"
            )
        names = overrides.get("names") or record.get("names") or []
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        h, w = (int(v) for v in record["imgsz"])
        channels = int(record.get("in_channels", DEFAULT_IN_CHANNELS))
        kind = kind_named(record["kind"])
        if not (1 <= h <= MAX_IMGSZ and 1 <= w <= MAX_IMGSZ and 1 <= channels <= MAX_IN_CHANNELS):
            raise ValueError(f"imgsz {h}x{w} / in_channels {channels} out of range")
        if len(names) > MAX_CLASSES:
            raise ValueError(f"{len(names)} class names (at most {MAX_CLASSES})")
        metadata = kind.file_metadata(dict(record.get("metadata") or {}))
        meta = {
            "task": record["task"],
            "names": list(names),
            "imgsz": max(h, w),
            "in_channels": channels,
            "mean": list(record.get("mean", [0.0] * channels)),
            "std": list(record.get("std", [1.0] * channels)),
            "model_config": record.get("model_config"),
            "data": record.get("data"),
            "metadata": metadata,
        }
        return meta, kind, (h, w)

    def _new_runner(self, video: bool = False) -> TaskRunner:
        conf, max_det = self.kind.runner_options(self.meta["metadata"])
        return TaskRunner(self.path, self.kind, self.meta["names"], conf, max_det, video=video)

    @property
    def runner(self) -> TaskRunner:
        if self._runner is None:
            self._runner = self._new_runner()
        return self._runner

    def video(self) -> VideoStream:
        """A context for one video's frames, run in MediaPipe's VIDEO mode (the predictor opens one per video
        file or webcam)."""
        return VideoStream(self)

    def images(self, x: torch.Tensor) -> list[np.ndarray]:
        """The uint8 RGB images behind a normalised (B, C, H, W) batch (grey models: grey in all three channels)."""
        mean = torch.tensor(self.meta["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.meta["std"], dtype=torch.float32).view(1, -1, 1, 1)
        pixels = ((x.detach().float().cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return list(pixels.permute(0, 2, 3, 1).contiguous().numpy())

    def __call__(self, x: torch.Tensor):
        return self.outputs([self.runner.run(img) for img in self.images(x)])

    def outputs(self, results: list[dict[str, np.ndarray]]):
        """Per-image runner results → the batch outputs the task post-processes."""
        return self.kind.outputs(results, self.meta["metadata"])

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


class VideoStream:
    """One video run through a VIDEO-mode Task of its own: ``run(x, timestamps_ms)`` takes a batch of consecutive
    frames with their times. Timestamps are forced strictly increasing, as MediaPipe requires."""

    def __init__(self, model: MediaPipeModel):
        self.model, self.runner, self.last_ms = model, None, -1

    def __enter__(self) -> VideoStream:
        self.runner = self.model._new_runner(video=True)
        return self

    def run(self, x: torch.Tensor, timestamps_ms: list[int]):
        if self.runner is None:
            raise UsageError("VideoStream.run outside its `with` block")
        results = []
        for img, ms in zip(self.model.images(x), timestamps_ms, strict=True):
            self.last_ms = max(int(ms), self.last_ms + 1)
            results.append(self.runner.run(img, self.last_ms))
        return self.model.outputs(results)

    def __exit__(self, *exc) -> None:
        if self.runner is not None:
            self.runner.close()

"""The trainer's side of run logging: every registered ``logger`` that wants the run is started and called, on rank
0 only. A logger that raises (a server down, a disk full) is warned about once and switched off; training goes on.

The trainer never names a logger: TensorBoard, MLflow and the report page are found through the registry, and a
plugin adds W&B, ClearML or DVCLive by registering a class of kind ``logger`` (see visionkit/runs/loggers/base.py).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import VisionkitError
from visionkit.registry import REGISTRY


@dataclass
class RunStart:
    """What a logger learns when training starts.

    Attributes:
        save_dir: the run folder (runs/TASK/NAME).
        task: the task's registered name.
        model: what the user asked for (a preset name, a YAML, a checkpoint) or the backbone's name.
        data: the dataset the run trains on.
        settings: every resolved setting (the run's args.yaml).
        start_epoch: 0, or the first epoch a resumed run trains.
        resumed: True when ``resume`` continued an interrupted run (loggers continue its records).
        net: a copy of the model in eval mode (for a graph), when a logger sets ``wants_net``; else None.
        input_shape: (channels, height, width) of one input image.
    """

    save_dir: Path
    task: str
    model: str
    data: str
    settings: dict[str, Any]
    start_epoch: int = 0
    resumed: bool = False
    net: Any = None
    input_shape: tuple[int, int, int] = (3, 224, 224)
    extra: dict[str, Any] = field(default_factory=dict)


class Loggers:
    """The loggers a run uses; each hook forwards to every live logger, catching what they raise."""

    def __init__(self, args, enabled: bool = True):
        self.active: list[Any] = []
        self._last_times: dict[str, float] = {}
        if not enabled:  # not rank 0: nothing is logged from this process
            return
        # lower ``order`` first (the report page is written before others keep it as an artifact), then by name
        for name in sorted(
            REGISTRY.available("logger"), key=lambda n: (getattr(REGISTRY.get("logger", n), "order", 10), n)
        ):
            cls = REGISTRY.get("logger", name)
            try:
                if cls.wanted(args):
                    self.active.append(cls())
            except VisionkitError:  # the user asked for it and it cannot work: say so before training starts
                raise
            except Exception as e:
                self._warn(name, "start", e)

    @property
    def names(self) -> list[str]:
        return [getattr(lg, "name", type(lg).__name__) for lg in self.active]

    def _warn(self, name: str, hook: str, error: Exception) -> None:
        warnings.warn(
            f"logger '{name}' failed in {hook} ({type(error).__name__}: {error}); it is switched off for this run, "
            f"training goes on",
            RuntimeWarning,
            stacklevel=3,
        )

    def _call(self, hook: str, *args) -> None:
        for lg in list(self.active):
            try:
                getattr(lg, hook)(*args)
            except Exception as e:
                self.active.remove(lg)
                self._warn(getattr(lg, "name", type(lg).__name__), hook, e)
                try:
                    lg.close(True)
                except Exception:  # already reported once
                    pass

    # -- the hooks the trainer calls (one call site each) --------------------------------------------------------
    def train_start(self, trainer) -> None:
        if not self.active:
            return
        a = trainer.args
        self._last_times = dict(trainer.timer.seconds)
        cfg = trainer.model_config  # a preset has no name of its own in the config: describe it by its parts
        parts = [cfg[p].get("name") for p in ("backbone", "neck", "head") if isinstance(cfg.get(p), dict)]
        model = a.model or "/".join(str(p) for p in parts if p)
        net = (
            copy.deepcopy(getattr(trainer.model, "module", trainer.model)).eval()  # DDP's wrapper does not trace
            if any(getattr(lg, "wants_net", False) for lg in self.active)
            else None
        )
        run = RunStart(
            save_dir=Path(trainer.save_dir),
            task=trainer.task.name,
            model=str(model),
            data=str(trainer.data.source),
            settings=a.plain() if hasattr(a, "plain") else dict(a),
            start_epoch=trainer.start_epoch,
            resumed=trainer.resume_ckpt is not None,
            net=net,
            input_shape=(trainer.data.channels, trainer.imgsz, trainer.imgsz),
        )
        if trainer.verbose:
            print(f"loggers: {', '.join(self.names)}")
        self._call("train_start", run)

    def epoch_end(self, trainer, row: dict[str, float]) -> None:
        if not self.active:
            return
        now = dict(trainer.timer.seconds)
        times = {k: v - self._last_times.get(k, 0.0) for k, v in now.items()}
        self._last_times = now
        lrs = [float(g["lr"]) for g in trainer.optimizer.param_groups]
        self._call("epoch_end", int(row["epoch"]), dict(row), lrs, times)

    def images(self, paths: list[Path | None], step: int) -> None:
        files = [Path(p) for p in paths if p is not None and Path(p).is_file()]
        if self.active and files:
            self._call("images", files, step)

    def train_end(self, trainer, metrics: dict[str, float], metrics_obj, plots: list[Path]) -> None:
        if not self.active:
            return
        save_dir = Path(trainer.save_dir)
        kept = [save_dir / n for n in ("args.yaml", "results.csv", "results.png", "weights/best.pt")]
        artifacts = [p for p in [*kept, *plots, *sorted(save_dir.glob("train_batch*.jpg"))] if Path(p).is_file()]
        best = save_dir / "weights/best.pt"
        details = {
            "table": metrics_obj.table() if metrics_obj is not None else "",
            "best": best if best.is_file() else None,
            "samples": sample_images(trainer.val_set),
            "fitness_key": getattr(metrics_obj, "fitness_key", None),
            "higher_is_better": bool(getattr(metrics_obj, "higher_is_better", True)),
        }
        self._call("train_end", dict(metrics), list(dict.fromkeys(artifacts)), dict(trainer.timer.seconds), details)

    def close(self, failed: bool) -> None:
        for lg in self.active:
            try:
                lg.close(failed)
            except Exception as e:
                self._warn(getattr(lg, "name", type(lg).__name__), "close", e)
        self.active = []


def exported(run_dir: Path, files: list[Path]) -> None:
    """Tell every registered logger with an ``exported(run_dir, files)`` class method that ``files`` were exported
    from the run in ``run_dir`` (MLflow adds them to that run); one that fails is warned about, the export stands."""
    for name in REGISTRY.available("logger"):
        hook = getattr(REGISTRY.get("logger", name), "exported", None)
        if hook is None:
            continue
        try:
            hook(Path(run_dir), [Path(f) for f in files])
        except Exception as e:
            warnings.warn(f"logger '{name}' could not record the export ({type(e).__name__}: {e})", stacklevel=2)


def sample_images(dataset, n: int = 6) -> list[Path | np.ndarray]:
    """Up to ``n`` validation images spread over ``dataset``: file paths where it has them (``files`` or
    ``samples``), else uint8 BGR arrays of in-memory images (``images``); [] when it has neither."""
    if dataset is None:
        return []
    files = getattr(dataset, "files", None)
    if files is None and getattr(dataset, "samples", None) is not None:
        files = [s[0] for s in dataset.samples]
    if files:
        step = max(1, len(files) // n)
        return [Path(f) for f in list(files)[::step][:n]]
    images = getattr(dataset, "images", None)
    if images is None or len(images) == 0:
        return []
    step = max(1, len(images) // n)
    out = []
    for img in images[::step][:n]:
        arr = np.asarray(img.permute(1, 2, 0) if hasattr(img, "permute") else img, dtype=np.uint8)
        out.append(np.ascontiguousarray(arr[..., ::-1]) if arr.shape[-1] == 3 else arr[..., 0])  # RGB → BGR
    return out

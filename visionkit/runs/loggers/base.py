"""What a run logger is: a class registered as kind ``logger`` whose hooks the trainer calls (rank 0 only).

    @register("logger", "mylogger")
    class MyLogger(RunLogger):
        @classmethod
        def wanted(cls, args) -> bool:
            return bool(os.environ.get("MYLOGGER_URL"))

        def epoch_end(self, epoch, row, lrs, times): ...

A logger that raises is warned about once and switched off; training goes on (engine/loggers.py does that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.engine.loggers import RunStart

__all__ = ["RunLogger", "RunStart"]


class RunLogger:
    """Base class of run loggers: every hook does nothing, so a logger overrides only what it records."""

    name = "logger"

    @classmethod
    def wanted(cls, args) -> bool:
        """Whether this logger is on for a run with settings ``args``. Raise a VisionkitError when the user asked
        for it and it cannot work (e.g. its package is missing): that stops the run before training starts."""
        return False

    def train_start(self, run: RunStart) -> None:
        """Training starts (or resumes): ``run`` holds the settings and the model."""

    def epoch_end(self, epoch: int, row: dict[str, float], lrs: list[float], times: dict[str, float]) -> None:
        """Epoch ``epoch`` (1-based, the step) ended: ``row`` is its results.csv row, ``lrs`` the learning rate of
        each parameter group, ``times`` the seconds each phase (data, copy, step, val, save) took this epoch."""

    def images(self, paths: list[Path], step: int) -> None:
        """Image files to show: the first training batches, the validation plots (confusion matrix, PR curve)."""

    def train_end(
        self, metrics: dict[str, float], artifacts: list[Path], times: dict[str, float], details: dict[str, Any]
    ) -> None:
        """Training finished: ``metrics`` of best.pt's final validation, ``artifacts`` the files worth keeping
        (best.pt, plots, results.csv, args.yaml), ``times`` the whole run's seconds per phase. ``details``:
        ``table`` (the task's per-class table as text, "" when it has none), ``best`` (best.pt's path or None),
        ``samples`` (a few validation images: paths or BGR arrays), ``fitness_key`` (the metric that picks best.pt,
        None without validation) and ``higher_is_better``."""

    # A logger that keeps artifacts may also define a class method ``exported(run_dir, files)``: called after
    # ``export`` wrote ``files`` from the checkpoint of the run in ``run_dir`` (a separate process, perhaps days later).

    def close(self, failed: bool) -> None:
        """Always called last, also when training failed (``failed``): flush and release what the logger holds."""

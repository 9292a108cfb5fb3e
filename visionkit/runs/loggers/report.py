"""The run's own record: run.json (status, time split, final metrics) always, and report.html at the end of a
training run with plots on. Registered as a logger so the trainer finds it like any other."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from visionkit.registry import register
from visionkit.runs.loggers.base import RunLogger, RunStart
from visionkit.runs.record import read_record, write_record

SAMPLES = 6  # predictions shown in the report


@register("logger", "report")
class ReportLogger(RunLogger):
    """run.json in every training run; report.html (one self-contained page) when plots=True."""

    name = "report"
    order = 0  # first at train end, so the other loggers can keep report.html as an artifact

    @classmethod
    def wanted(cls, args) -> bool:
        return True

    def __init__(self):
        self.save_dir: Path | None = None
        self.record: dict[str, Any] = {}
        self.plots = False
        self.seen: dict[str, float] = {}  # seconds per phase this process has already added to the record

    def train_start(self, run: RunStart) -> None:
        self.save_dir = run.save_dir
        self.plots = bool(run.settings.get("plots"))
        old = read_record(run.save_dir) if run.resumed else {}
        self.record = {
            **old,
            "task": run.task,
            "model": run.model,
            "data": run.data,
            "status": "running",
            "pid": os.getpid(),
            "started": old.get("started", time.time()),
            "times": old.get("times", {}),
        }
        write_record(run.save_dir, self.record)

    def epoch_end(self, epoch: int, row: dict[str, float], lrs: list[float], times: dict[str, float]) -> None:
        total = self.record.setdefault("times", {})
        for phase, seconds in times.items():
            total[phase] = total.get(phase, 0.0) + seconds
            self.seen[phase] = self.seen.get(phase, 0.0) + seconds
        self.record["epochs_done"] = epoch
        write_record(self.save_dir, self.record)

    def train_end(
        self, metrics: dict[str, float], artifacts: list[Path], times: dict[str, float], details: dict[str, Any]
    ) -> None:
        self.record.update(
            {
                "metrics": metrics,
                "table": details.get("table", ""),
                "fitness_key": details.get("fitness_key"),
                "higher_is_better": details.get("higher_is_better", True),
                "ended": time.time(),
            },
        )
        total = self.record.setdefault("times", {})
        for phase, seconds in times.items():  # what came after the last epoch (the final validation)
            total[phase] = total.get(phase, 0.0) + seconds - self.seen.get(phase, 0.0)
        write_record(self.save_dir, self.record)
        if not self.plots:
            return
        from visionkit.runs.report import write_report

        predictions = self._predictions(details.get("best"), details.get("samples") or [])
        write_report(self.save_dir, predictions=predictions)

    def _predictions(self, best: Path | None, samples: list) -> list[tuple[Path | bytes, str]]:
        """A few validation images as best.pt predicts them: (image file bytes, caption) pairs."""
        if best is None or not samples:
            return []
        from visionkit.api import Model

        out = []
        try:
            with tempfile.TemporaryDirectory(prefix="vk-report-") as tmp:
                model = Model(str(best))
                results = model.predict(source=samples, save=True, project=tmp, name="p", verbose=False, batch=8)
                folder = Path(model.save_dir)
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
                captions = [f"{r['image']}: {model.task.describe(r)}" for r in results]
                for i, f in enumerate(files[:SAMPLES]):
                    out.append((f.read_bytes(), captions[i] if len(files) == len(captions) else f.name))
        except Exception as e:  # the report still shows everything else
            warnings.warn(f"report: sample predictions failed ({type(e).__name__}: {e})", stacklevel=2)
        return out

    def close(self, failed: bool) -> None:
        if self.save_dir is None:
            return
        self.record["status"] = "failed" if failed else "finished"
        self.record.setdefault("ended", time.time())
        write_record(self.save_dir, self.record)
        self.save_dir = None

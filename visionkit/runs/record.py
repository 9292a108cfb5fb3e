"""run.json: what a run folder says about itself beyond args.yaml and results.csv (status, start and end times, the
time split, the final metrics and the per-class table), written by the ``report`` logger."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORD = "run.json"


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run's run.json ({} when it has none, or one that does not parse)."""
    path = Path(run_dir) / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write run.json whole (a temporary file renamed over the old one)."""
    path = Path(run_dir) / RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)


def status(record: dict[str, Any]) -> str:
    """finished, failed, running (its process lives), stopped (killed: it never wrote its end) or unknown."""
    state = record.get("status")
    if state == "running":
        pid = record.get("pid")
        try:
            os.kill(int(pid), 0)
        except (TypeError, ValueError, ProcessLookupError):
            return "stopped"
        except PermissionError:  # someone else's live process
            return "running"
        return "running"
    return state or "unknown"

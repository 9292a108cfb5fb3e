"""Runs: list, compare and report training runs (runs/TASK/NAME folders), and the run loggers (TensorBoard, MLflow,
the report page) the trainer finds through the registry as kind ``logger``.

Imports stay light here (no torch): ``visionkit runs`` lists folders without loading a model."""

from __future__ import annotations

__all__ = ["compare_runs", "list_runs", "show_run", "write_report"]


def __getattr__(name: str):
    if name in ("compare_runs", "list_runs", "show_run"):
        from visionkit.runs import compare

        return getattr(compare, name)
    if name == "write_report":
        from visionkit.runs.report import write_report

        return write_report
    raise AttributeError(f"module 'visionkit.runs' has no attribute '{name}'")

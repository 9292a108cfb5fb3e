"""Built-in run loggers, registered as kind ``logger``: the run record and report page, TensorBoard, MLflow."""

from visionkit.runs.loggers import mlflow, report, tensorboard  # noqa: F401  (importing registers them)
from visionkit.runs.loggers.base import RunLogger, RunStart

__all__ = ["RunLogger", "RunStart"]

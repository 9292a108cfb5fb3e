"""What the generic engine (trainer, validator, predictor) asks of a task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset


@dataclass
class DataInfo:
    """A resolved dataset: what a task needs to build its splits and what a checkpoint must remember."""

    names: list[str]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    native_imgsz: int | None = None
    profile: str = "photos"
    extra: dict[str, Any] = field(default_factory=dict)


class Metrics:
    """Accumulates predictions over a validation pass."""

    fitness_key = "fitness"

    def update(self, outputs: Any, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def table(self) -> str:
        """A human-readable summary printed after validation."""
        return ""

    def plot(self, save_dir: Path) -> list[Path]:
        return []


class Task:
    """Base class; subclasses are registered with ``@register("task", NAME)``."""

    name: str = ""
    default_model: str = ""
    default_data: str = ""

    def resolve_data(self, args: dict[str, Any]) -> DataInfo:
        raise NotImplementedError

    def bind(self, model) -> None:
        """Called with the network before training/validation (a detection loss needs the head's layout)."""

    def epoch_start(self, trainer) -> None:
        """Called at the start of every training epoch (e.g. to switch mosaic off for the last epochs)."""

    def plot_batch(self, batch: Any, path: Path, names: list[str]) -> Path | None:
        """Draw a raw training batch with its labels, so a person can check the augmentation."""
        return None

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: dict[str, Any]) -> Dataset:
        raise NotImplementedError

    def collate_fn(self):
        return None  # torch's default

    def preprocess_batch(self, batch: Any, device: torch.device) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, outputs: Any, batch: dict[str, Any], args: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def new_metrics(self, names: list[str]) -> Metrics:
        raise NotImplementedError

    def load_inputs(self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False
                    ) -> tuple[torch.Tensor, list]:
        """Images (paths, or BGR arrays such as video frames) → a normalised batch tensor plus per-image context
        needed to post-process. ``rect``: the network takes any stride-multiple shape, so a task may use a snug
        non-square one."""
        raise NotImplementedError

    def postprocess(self, outputs: Any, context: list, args: dict[str, Any], names: list[str]) -> list[dict]:
        """Raw network outputs → one JSON-ready result dict per image."""
        raise NotImplementedError

    def describe(self, result: dict) -> str:
        """One line per image for the console."""
        return str(result)

    def annotate(self, item, result: dict, channels: int):
        """The image (path or BGR array) with its result drawn on it (BGR uint8), for ``save=True``."""
        raise NotImplementedError

    def export_wrapper(self, net, args: dict[str, Any]):
        """The module whose outputs an exported file has (with ``output_names``, ``layout`` and
        ``dynamic_output_axes`` attributes)."""
        raise NotImplementedError(f"task '{self.name}' cannot be exported yet")

    def yolo_rows(self, result: dict) -> list[str]:
        """Rows for ``save_txt=True`` (tasks without a text form return none)."""
        return []

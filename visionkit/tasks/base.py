"""What the generic engine (trainer, validator, predictor) asks of a task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from visionkit.cfg import Settings
from visionkit.data.rules import DatasetRules


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
    """Accumulates predictions over a validation pass. ``fitness_key`` names the metric that picks best.pt;
    ``higher_is_better`` says which way it improves (an error such as depth's AbsRel improves downwards)."""

    fitness_key = "fitness"
    higher_is_better = True

    def improved(self, value: float, best: float | None) -> bool:
        """True when ``value`` of the fitness metric beats ``best`` (None: nothing to beat yet)."""
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best

    def update(self, outputs: Any, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def table(self) -> str:
        """A human-readable summary printed after validation."""
        return ""

    def plot(self, save_dir: Path) -> list[Path]:
        return []

    def save(self, save_dir: Path, args) -> list[Path]:
        """Result files a task writes after a validation as ``args`` (the run's settings) ask, with or without
        plots (e.g. COCO results for ``save_json=True``); the default writes none."""
        return []


class Task:
    """Base class; subclasses are registered with ``@register("task", NAME)``.

    A task declares everything shared code would otherwise have to know about it: its default model and data, the
    neck and head a bare backbone gets and the backbone strides that head needs, its own settings keys, and how
    many outputs its head has for a dataset. A new task is added by adding files; nothing shared changes."""

    name: str = ""
    default_model: str = ""
    default_data: str = ""
    default_neck: str = "identity"  # neck and head a bare backbone (model=resnet18) gets for this task
    default_head: str = ""
    backbone_strides: tuple[int, ...] | None = None  # strides the default head reads (None: the backbone's default)
    # task-specific settings: key → (default, one-line comment); merged with cfg/default.yaml, checked the same way
    keys: dict[str, tuple[Any, str]] = {}
    # True when ``loss`` returns a sum over the batch's images (not a mean): data-parallel training, which averages
    # gradients over the processes, then scales it by their number so every process count learns alike
    loss_sums_over_batch: bool = False
    # modes beyond train/val/predict/export/lrfind: each is a method ``mode(model, args)`` of the task, reached as
    # ``visionkit TASK MODE ...`` and ``Model(...).MODE(**overrides)``
    modes: tuple[str, ...] = ()
    # True for the one task a bare backbone name becomes when no task is given (alone, a backbone classifies)
    bare_default: bool = False
    # facets the subsystems read (None: the task does not take part): the explain adapter class
    # (visionkit.tasks.explain_base.Explainer), the Label Studio region writer, the MediaPipe kind
    explainer: type | None = None
    labelstudio = None  # a visionkit.data.labelstudio.prelabel.Regions
    # the registered MediaPipe facet (kind ``mediapipe_kind``) a plain .tflite of this task is read as (a file
    # visionkit wrote names its own kind); None: no MediaPipe Task runs this task's models
    mediapipe_kind: str | None = None
    # what the task needs of a data.yaml dataset: training and ``visionkit data check`` apply the same rules
    # (visionkit/data/rules.py); None for a task that reads no data.yaml images/labels layout
    dataset_rules: DatasetRules | None = None

    def bare_model_config(self, backbone: str | dict[str, Any]) -> dict[str, Any]:
        """The model config of a registered backbone (a name, or a spec with its options, such as another task's
        preset's backbone) with this task's default neck and head. ``num_classes`` is a placeholder until training
        sets it from the data (:meth:`num_outputs`)."""
        spec: dict[str, Any] = {"name": backbone} if isinstance(backbone, str) else dict(backbone)
        strides = self._strides_for(spec)
        if strides is not None:
            spec["out_strides"] = strides
        return {
            "task": self.name,
            "num_classes": 1,
            "backbone": spec,
            "neck": {"name": self.default_neck},
            "head": {"name": self.default_head},
        }

    def _strides_for(self, spec: dict[str, Any]) -> list[int] | None:
        """``backbone_strides``, or the deepest run of them the backbone can give (built on the meta device, which
        allocates nothing); None: the backbone's own default."""
        from visionkit.errors import UsageError
        from visionkit.registry import REGISTRY

        wanted = self.backbone_strides
        options = {k: v for k, v in spec.items() if k not in ("name", "out_strides")}
        for start in range(len(wanted or ())):
            try:
                with torch.device("meta"):
                    REGISTRY.build("backbone", spec["name"], out_strides=wanted[start:], **options)
                return list(wanted[start:])
            except UsageError:
                continue
        return None

    def num_outputs(self, data: DataInfo) -> int:
        """What the head's ``num_classes`` must be for ``data`` (the number of classes; 1 for a depth map)."""
        return len(data.names)

    def configure_model(self, config: dict[str, Any], data: DataInfo, args: Settings) -> None:
        """Fit a new model's config to the data and settings before it is built for training: the head's outputs
        (:meth:`num_outputs`), input channels, and anything the network must remember (what its output means)."""
        config["num_classes"] = self.num_outputs(data)
        config["in_channels"] = data.channels

    def resolve_data(self, args: Settings) -> DataInfo:
        raise NotImplementedError

    def bind(self, model) -> None:
        """Called with the network before training/validation (a detection loss needs the head's layout)."""

    def epoch_start(self, trainer) -> None:
        """Called at the start of every training epoch (e.g. to switch mosaic off for the last epochs)."""

    def plot_batch(self, batch: Any, path: Path, names: list[str]) -> Path | None:
        """Draw a raw training batch with its labels, so a person can check the augmentation."""
        return None

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings) -> Dataset:
        raise NotImplementedError

    def collate_fn(self):
        return None  # torch's default

    def preprocess_batch(self, batch: Any, device: torch.device) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, outputs: Any, batch: dict[str, Any], args: Settings) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def new_metrics(self, names: list[str]) -> Metrics:
        raise NotImplementedError

    def load_inputs(
        self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False
    ) -> tuple[torch.Tensor, list]:
        """Images (paths, or BGR arrays such as video frames) → a normalised batch tensor plus per-image context
        needed to post-process. ``rect``: the network takes any stride-multiple shape, so a task may use a snug
        non-square one."""
        raise NotImplementedError

    def postprocess(self, outputs: Any, context: list, args: Settings, names: list[str]) -> list[dict]:
        """Raw network outputs → one result dict per image: JSON-ready values, plus arrays (a mask, a depth map)
        under keys starting with ``_``, which the API returns and predictions.json leaves out."""
        raise NotImplementedError

    def describe(self, result: dict) -> str:
        """One line per image for the console."""
        return str(result)

    def annotate(self, item, result: dict, channels: int):
        """The image (path or BGR array) with its result drawn on it (BGR uint8), for ``save=True``."""
        raise NotImplementedError

    def export_wrapper(self, net, args: Settings):
        """The module whose outputs an exported file has (with ``output_names``, ``layout`` and
        ``dynamic_output_axes`` attributes)."""
        from visionkit.errors import UsageError

        raise UsageError(f"task '{self.name}' cannot be exported: its Task defines no export_wrapper")

    def edge_graph(self, net, inputs, size: tuple[int, int], args: Settings):
        """The module a MediaPipe export (.tflite) converts: ``inputs`` (visionkit.export.graphs.EdgeInput) turns the
        (1, H, W, 3) RGB input in 0..1 into the network's input; the module's ``kind`` names the MediaPipe Task
        that reads it (classifier, segmenter, value_map, detector, detector_nms) and its ``metadata`` holds what
        this task's post-processing needs to read the file's outputs back."""
        from visionkit.errors import UsageError

        raise UsageError(f"task '{self.name}' cannot be exported for MediaPipe: its Task defines no edge_graph")

    def yolo_rows(self, result: dict) -> list[str]:
        """Rows for ``save_txt=True`` (tasks without a text form return none)."""
        return []

    def save_result(self, item, result: dict, save_dir: Path, stem: str, args: Settings) -> None:
        """Write this task's per-image files for ``predict`` (class-id masks, depth maps, ...) under ``save_dir``,
        named after ``stem``; called for every image or video frame. The default writes nothing."""

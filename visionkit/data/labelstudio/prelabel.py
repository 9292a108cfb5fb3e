"""visionkit predictions → Label Studio pre-annotations, in the regions a project's labeling config asks for.

Which region types a task fills and how its predictions become regions is the task's Label Studio facet
(``Task.labelstudio``, a :class:`Regions` in the task's folder: boxes → RectangleLabels, masks → BrushLabels or
PolygonLabels, classes → Choices); this module plans where they go and writes them, and names no task. Model
classes are matched to the config's labels by name (``names_map`` renames model classes first); a config label
the model does not know is an error that names it. Model classes the config lacks get no region.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visionkit.data.labelstudio.config import Control, image_tags, parse_label_config
from visionkit.errors import UsageError

TAG_NAMES = {
    "rectanglelabels": "RectangleLabels",
    "brushlabels": "BrushLabels",
    "polygonlabels": "PolygonLabels",
    "choices": "Choices",
}


class Regions:
    """A task's Label Studio facet: the control tags its predictions fill (in order of preference within the
    config's own order) and how one prediction dict becomes regions."""

    controls: tuple[str, ...] = ()

    def config_labels(self, names: list[str]) -> list[str]:
        """The labels a labeling config made for this model offers (e.g. without a segmenter's background)."""
        return list(names)

    def regions(self, writer: RegionWriter, result: dict) -> list[dict]:
        """The regions of one prediction (``writer.region(...)`` makes each; ``writer.target`` says where)."""
        raise NotImplementedError


@dataclass
class Target:
    """Where a model's predictions go in one labeling config."""

    task: str
    regions: Regions
    control: Control  # the tag the regions are written to (from_name)
    image: str  # the <Image> tag it labels (to_name)
    data_key: str  # the task data key holding the image URL
    label_of: dict[int, str] = field(default_factory=dict)  # model class id → config label
    unused: list[str] = field(default_factory=list)  # model classes the config has no label for

    @property
    def type(self) -> str:
        return self.control.type


def parse_names_map(value) -> dict[str, str]:
    """``names_map``: a dict, or "model_name:label,other:label" text."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        if ":" not in part:
            raise UsageError(
                f"names_map entry '{part.strip()}' is not model_name:label (e.g. names_map=car:Car,person:Pedestrian)"
            )
        k, v = part.split(":", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def check_task(task) -> Regions:
    """The Label Studio facet of ``task`` (a Task); an error for a task that has none."""
    facet = getattr(task, "labelstudio", None)
    if facet is None:
        raise UsageError(
            f"a {task.name} model has no Label Studio form to pre-label with: its task declares no Label Studio "
            f"region type (models that do: boxes → RectangleLabels, masks → BrushLabels or PolygonLabels, classes "
            f"→ Choices)"
        )
    return facet


def plan(task, names: list[str], config_xml: str, names_map=None) -> Target:
    """The control, image and class mapping for ``task``'s (a Task's) predictions in this labeling config; a
    UsageError that says how to fix the config or ``names_map`` when they do not fit the model."""
    facet = check_task(task)
    kinds = facet.controls
    controls = parse_label_config(config_xml)
    images = image_tags(config_xml)
    candidates = [c for c in controls.values() if c.type in kinds and c.to_name in images]
    if not candidates:
        found = ", ".join(f"<{TAG_NAMES.get(c.type, c.type)} name={c.name!r}>" for c in controls.values()) or "none"
        raise UsageError(
            f"the labeling config has no {' or '.join(f'<{TAG_NAMES[k]}>' for k in kinds)} tag on an "
            f"<Image> for this {task.name} model (control tags found: {found})"
        )
    control = candidates[0]
    labels = control.labels or [
        n for c in controls.values() if c.type == "labels" and c.to_name == control.to_name for n in c.labels
    ]
    mapping = parse_names_map(names_map)
    missing = [k for k in mapping if k not in names]
    if missing:
        raise UsageError(
            f"names_map names {', '.join(map(repr, missing))}, which the model does not have; its "
            f"classes: {', '.join(names)}"
        )
    label_of = {i: mapping.get(n, n) for i, n in enumerate(names)}
    unknown = [lbl for lbl in labels if lbl not in label_of.values()]
    if unknown:
        raise UsageError(
            f"the labeling config's <{TAG_NAMES[control.type]} name={control.name!r}> has label(s) "
            f"{', '.join(map(repr, unknown))} that the model does not know (its classes: "
            f"{', '.join(names)}); map model classes to them with names_map=model_name:label,..."
        )
    target = Target(task.name, facet, control, control.to_name, images[control.to_name])
    target.label_of = {i: lbl for i, lbl in label_of.items() if lbl in labels}
    target.unused = [names[i] for i in label_of if i not in target.label_of]
    return target


class RegionWriter:
    """Prediction dicts (as ``Model.predict`` returns them) → Label Studio prediction entries
    ``{"result": [regions], "score": s}``; counts what it wrote per label."""

    def __init__(self, target: Target):
        self.target = target
        self.written: Counter = Counter()
        self._next_id = 0

    def region(self, rtype: str, value: dict, score: float, size: tuple[int, int] | None) -> dict:
        """One region of type ``rtype`` in the target's control; ``size`` (width, height) of the original image
        for regions placed in it (None for whole-image ones such as choices)."""
        self._next_id += 1
        region = {
            "id": f"vk{self._next_id}",
            "from_name": self.target.control.name,
            "to_name": self.target.image,
            "type": rtype,
            "value": value,
            "score": _finite(score),
            "origin": "prediction",
        }
        if size is not None:
            region.update(original_width=int(size[0]), original_height=int(size[1]), image_rotation=0)
        return region

    def prediction(self, result: dict) -> dict:
        regions = self.target.regions.regions(self, result)
        for r in regions:
            self.written[r["value"][r["type"]][0]] += 1
        scores = [r["score"] for r in regions]
        return {"result": regions, "score": round(float(np.mean(scores)), 5) if scores else 0.0}


def _finite(score) -> float:
    """A score JSON can carry: a model that produced NaN or inf reports 0."""
    value = float(score)
    return round(value, 5) if math.isfinite(value) else 0.0


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The outer contour of each connected part of a boolean mask, as (N, 2) vertices at the centres of its
    boundary pixels (pixel i spans [i, i+1)); parts too thin for a polygon of 3 points are left out. Holes are not
    kept (a polygon has none)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours if len(c) >= 3]


def model_version(path: str | Path) -> str:
    """``best.pt@1a2b3c4d5e6f``: the file's name and the start of its SHA-256, so Label Studio tells models apart."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{Path(path).name}@{h.hexdigest()[:12]}"


def default_config(task, names: list[str], kind: str | None = None) -> str:
    """A labeling config for ``task``'s (a Task's) model with its classes (those its facet offers as labels)."""
    facet = check_task(task)
    kind = kind or facet.controls[0]
    labels = facet.config_labels(names)
    child = "Choice" if kind == "choices" else "Label"
    items = "".join(f'<{child} value="{_xml_attr(n)}"/>' for n in labels)
    return (
        f'<View>\n  <Image name="image" value="$image"/>\n  <{TAG_NAMES[kind]} name="label" toName="image">'
        f"{items}</{TAG_NAMES[kind]}>\n</View>\n"
    )


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")

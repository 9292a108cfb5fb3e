"""visionkit predictions → Label Studio pre-annotations, in the regions a project's labeling config asks for.

detect → RectangleLabels (percent of the original image, rotation 0); segment → BrushLabels (RLE, exactly the
predicted mask) or PolygonLabels (the outer contour of each connected part); classify → Choices. Model classes
are matched to the config's labels by name (``names_map`` renames model classes first); a config label the model
does not know is an error that names it. Model classes the config lacks (a segmenter's background) get no region.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visionkit.data.labelstudio.config import Control, image_tags, parse_label_config
from visionkit.data.labelstudio.rle import encode_brush_mask
from visionkit.errors import UsageError

# the control tags each task fills, in order of preference within the config's own order
TASK_CONTROLS = {"detect": ("rectanglelabels",), "segment": ("brushlabels", "polygonlabels"), "classify": ("choices",)}
TAG_NAMES = {
    "rectanglelabels": "RectangleLabels",
    "brushlabels": "BrushLabels",
    "polygonlabels": "PolygonLabels",
    "choices": "Choices",
}


@dataclass
class Target:
    """Where a model's predictions go in one labeling config."""

    task: str
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


def check_task(task: str) -> tuple[str, ...]:
    """The control types a task's predictions can fill; an error for a task Label Studio has no region for."""
    if task not in TASK_CONTROLS:
        raise UsageError(
            f"a {task} model has no Label Studio region type to pre-label with (detect → "
            f"RectangleLabels, segment → BrushLabels or PolygonLabels, classify → Choices)"
        )
    return TASK_CONTROLS[task]


def plan(task: str, names: list[str], config_xml: str, names_map=None) -> Target:
    """The control, image and class mapping for ``task``'s predictions in this labeling config; a UsageError that
    says how to fix the config or ``names_map`` when they do not fit the model."""
    kinds = check_task(task)
    controls = parse_label_config(config_xml)
    images = image_tags(config_xml)
    candidates = [c for c in controls.values() if c.type in kinds and c.to_name in images]
    if not candidates:
        found = ", ".join(f"<{TAG_NAMES.get(c.type, c.type)} name={c.name!r}>" for c in controls.values()) or "none"
        raise UsageError(
            f"the labeling config has no {' or '.join(f'<{TAG_NAMES[k]}>' for k in kinds)} tag on an "
            f"<Image> for this {task} model (control tags found: {found})"
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
    target = Target(task, control, control.to_name, images[control.to_name])
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

    def _region(self, rtype: str, value: dict, score: float, size: tuple[int, int] | None) -> dict:
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
        regions = getattr(self, f"_{self.target.task}")(result)
        for r in regions:
            self.written[r["value"][r["type"]][0]] += 1
        scores = [r["score"] for r in regions]
        return {"result": regions, "score": round(float(np.mean(scores)), 5) if scores else 0.0}

    def _detect(self, result: dict) -> list[dict]:
        w, h = result["width"], result["height"]
        out = []
        for d in result["detections"]:
            label = self.target.label_of.get(d["class"])
            if label is None:
                continue
            x1, y1, x2, y2 = d["box"]
            value = {
                "x": x1 / w * 100,
                "y": y1 / h * 100,
                "width": (x2 - x1) / w * 100,
                "height": (y2 - y1) / h * 100,
                "rotation": 0,
                "rectanglelabels": [label],
            }
            out.append(self._region("rectanglelabels", value, d["score"], (w, h)))
        return out

    def _segment(self, result: dict) -> list[dict]:
        mask, w, h = result["_mask"], result["width"], result["height"]
        scores = {a["class"]: a.get("score", 1.0) for a in result["classes"]}
        out = []
        for c, label in self.target.label_of.items():
            if c not in scores:
                continue
            if self.target.type == "brushlabels":
                value = {"format": "rle", "rle": encode_brush_mask(mask == c), "brushlabels": [label]}
                out.append(self._region("brushlabels", value, scores[c], (w, h)))
                continue
            for points in mask_polygons(mask == c):
                value = {"points": (points / [w, h] * 100).tolist(), "closed": True, "polygonlabels": [label]}
                out.append(self._region("polygonlabels", value, scores[c], (w, h)))
        return out

    def _classify(self, result: dict) -> list[dict]:
        for t in result["top"]:  # the best class the config offers
            label = self.target.label_of.get(t["class"])
            if label is not None:
                return [self._region("choices", {"choices": [label]}, t["score"], None)]
        return []


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


def default_config(task: str, names: list[str], kind: str | None = None) -> str:
    """A labeling config for ``task`` with the model's classes (a segmenter's background left out)."""
    kind = kind or TASK_CONTROLS[task][0]
    labels = [n for n in names if not (task == "segment" and n.lower() == "background")]
    child = "Choice" if kind == "choices" else "Label"
    items = "".join(f'<{child} value="{_xml_attr(n)}"/>' for n in labels)
    return (
        f'<View>\n  <Image name="image" value="$image"/>\n  <{TAG_NAMES[kind]} name="label" toName="image">'
        f"{items}</{TAG_NAMES[kind]}>\n</View>\n"
    )


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")

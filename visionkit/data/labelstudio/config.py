"""The labeling config (XML): control tags, what they label, and their classes in the order the config lists."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from visionkit.errors import DataError

# control tag → result type; the *Labels tags carry classes, the bare ones take them from a <Labels> tag
CONTROL_TYPES = {
    "rectanglelabels": "rectanglelabels",
    "rectangle": "rectanglelabels",
    "polygonlabels": "polygonlabels",
    "polygon": "polygonlabels",
    "brushlabels": "brushlabels",
    "brush": "brushlabels",
    "keypointlabels": "keypointlabels",
    "keypoint": "keypointlabels",
    "choices": "choices",
    "labels": "labels",
}
OBJECT_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels")


@dataclass
class Control:
    name: str
    type: str
    to_name: str
    labels: list[str] = field(default_factory=list)


def parse_label_config(xml: str, source: str = "label config") -> dict[str, Control]:
    """``{control name: Control}`` in document order."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise DataError(f"{source} is not valid XML: {e}") from e
    controls: dict[str, Control] = {}
    for el in root.iter():
        kind = CONTROL_TYPES.get(el.tag.lower())
        if kind is None or "name" not in el.attrib:
            continue
        child = "choice" if kind == "choices" else "label"
        labels = [c.attrib["value"] for c in el.iter() if c.tag.lower() == child and "value" in c.attrib]
        controls[el.attrib["name"]] = Control(el.attrib["name"], kind, el.attrib.get("toName", ""), labels)
    return controls


def object_classes(controls: dict[str, Control]) -> list[str]:
    """Classes of rectangles, polygons and brushes, in config order, each once."""
    names: list[str] = []
    for c in controls.values():
        if c.type in OBJECT_TYPES or c.type == "labels":
            names += [n for n in c.labels if n not in names]
    return names


def choice_classes(controls: dict[str, Control]) -> list[str]:
    names: list[str] = []
    for c in controls.values():
        if c.type == "choices":
            names += [n for n in c.labels if n not in names]
    return names


def image_tags(xml: str, source: str = "label config") -> dict[str, str]:
    """``{Image tag name: the task data key it shows}``: ``<Image name="image" value="$image"/>`` → image."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise DataError(f"{source} is not valid XML: {e}") from e
    return {
        el.attrib["name"]: el.attrib.get("value", "").lstrip("$")
        for el in root.iter()
        if el.tag.lower() == "image" and "name" in el.attrib
    }

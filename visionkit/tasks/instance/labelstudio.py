"""An instance segmenter's Label Studio facet: one region per object, nothing merged and nothing split: a
BrushLabels region holding exactly its pixels (RLE, holes and pieces kept), or a PolygonLabels region tracing its
largest piece (a polygon holds one outline and no hole)."""

from __future__ import annotations

from visionkit.data.labelstudio.prelabel import Regions, RegionWriter
from visionkit.data.labelstudio.rle import encode_brush_mask
from visionkit.tasks.instance.masks import polygons


class ObjectRegions(Regions):
    controls = ("polygonlabels", "brushlabels")

    def regions(self, writer: RegionWriter, result: dict) -> list[dict]:
        w, h = result["width"], result["height"]
        out = []
        for d, mask in zip(result["detections"], result["_masks"]):
            label = writer.target.label_of.get(d["class"])
            if label is None or not mask.any():  # an object without a pixel has nothing to label
                continue
            if writer.target.type == "brushlabels":
                value = {"format": "rle", "rle": encode_brush_mask(mask), "brushlabels": [label]}
                out.append(writer.region("brushlabels", value, d["score"], (w, h)))
                continue
            outline = next(iter(polygons(mask)), None)
            if outline is None:  # a sliver too thin for three points
                continue
            value = {"points": (outline / [w, h] * 100).tolist(), "closed": True, "polygonlabels": [label]}
            out.append(writer.region("polygonlabels", value, d["score"], (w, h)))
        return out

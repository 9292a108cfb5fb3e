"""A segmenter's Label Studio facet: per predicted class, one BrushLabels region holding exactly its pixels (RLE)
or PolygonLabels regions tracing each connected part; the background class gets none."""

from __future__ import annotations

from visionkit.data.labelstudio.prelabel import Regions, RegionWriter, mask_polygons
from visionkit.data.labelstudio.rle import encode_brush_mask


class MaskRegions(Regions):
    controls = ("brushlabels", "polygonlabels")

    def config_labels(self, names: list[str]) -> list[str]:
        return [n for n in names if n.lower() != "background"]

    def regions(self, writer: RegionWriter, result: dict) -> list[dict]:
        mask, w, h = result["_mask"], result["width"], result["height"]
        scores = {a["class"]: a.get("score", 1.0) for a in result["classes"]}
        out = []
        for c, label in writer.target.label_of.items():
            if c not in scores:
                continue
            if writer.target.type == "brushlabels":
                value = {"format": "rle", "rle": encode_brush_mask(mask == c), "brushlabels": [label]}
                out.append(writer.region("brushlabels", value, scores[c], (w, h)))
                continue
            for points in mask_polygons(mask == c):
                value = {"points": (points / [w, h] * 100).tolist(), "closed": True, "polygonlabels": [label]}
                out.append(writer.region("polygonlabels", value, scores[c], (w, h)))
        return out

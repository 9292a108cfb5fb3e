"""A detector's Label Studio facet: one RectangleLabels region per box, in percent of the original image."""

from __future__ import annotations

from visionkit.data.labelstudio.prelabel import Regions, RegionWriter


class BoxRegions(Regions):
    controls = ("rectanglelabels",)

    def regions(self, writer: RegionWriter, result: dict) -> list[dict]:
        w, h = result["width"], result["height"]
        out = []
        for d in result["detections"]:
            label = writer.target.label_of.get(d["class"])
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
            out.append(writer.region("rectanglelabels", value, d["score"], (w, h)))
        return out

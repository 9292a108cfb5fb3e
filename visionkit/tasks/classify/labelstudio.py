"""A classifier's Label Studio facet: one Choices region, the best class the config offers."""

from __future__ import annotations

from visionkit.data.labelstudio.prelabel import Regions, RegionWriter


class ChoiceRegions(Regions):
    controls = ("choices",)

    def regions(self, writer: RegionWriter, result: dict) -> list[dict]:
        for t in result["top"]:
            label = writer.target.label_of.get(t["class"])
            if label is not None:
                return [writer.region("choices", {"choices": [label]}, t["score"], None)]
        return []

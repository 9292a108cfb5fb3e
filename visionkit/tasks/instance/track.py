"""Instance segmentation's facet for the tracking loop (visionkit.track.loop): the detection facet's boxes and ids,
with each tracked object's mask painted in its identity's colour."""

from __future__ import annotations

import numpy as np

from visionkit.tasks.detect.task import COLOURS
from visionkit.tasks.detect.track import DetectTracking


class InstanceTracking(DetectTracking):
    """How ``visionkit instance track`` reads and writes an instance result: tracked by box, drawn by mask."""

    def annotate(self, frame: np.ndarray, result: dict, trails: dict[int, list]) -> np.ndarray:
        img = frame.copy()
        for d, mask in zip(result["detections"], result["_masks"]):
            if d["id"] is None:
                continue
            colour = np.asarray(COLOURS[d["id"] % len(COLOURS)], np.float32)  # by identity, so a switch shows
            img[mask] = (0.55 * img[mask] + 0.45 * colour).astype(np.uint8)
        return super().annotate(img, result, trails)

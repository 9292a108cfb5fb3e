"""Detection's facet for the tracking loop (visionkit.track.loop): boxes out of a detect result, track ids back in,
and a frame drawn with ids and short trails."""

from __future__ import annotations

import cv2
import numpy as np

from visionkit.tasks.detect.task import COLOURS, draw_box


class DetectTracking:
    """How ``visionkit detect track`` reads and writes a detect result (see visionkit.track.loop.TrackFacet)."""

    def boxes(self, result: dict) -> np.ndarray:
        dets = result["detections"]
        return np.asarray([[*d["box"], d["score"], d["class"]] for d in dets], np.float64).reshape(-1, 6)

    def attach(self, result: dict, ids: list[int | None]) -> None:
        for d, track_id in zip(result["detections"], ids):
            d["id"] = track_id  # None: a detection no track claimed (low score, or a tentative track's first box)

    def annotate(self, frame: np.ndarray, result: dict, trails: dict[int, list]) -> np.ndarray:
        img = frame.copy()
        for d in result["detections"]:
            if d["id"] is None:
                continue
            colour = COLOURS[d["id"] % len(COLOURS)]  # colour by identity, so a switch is visible
            trail = np.round(np.asarray(trails.get(d["id"], []), np.float64)).astype(np.int32)
            if len(trail) > 1:
                cv2.polylines(img, [trail.reshape(-1, 1, 2)], False, colour, 2)
            draw_box(img, d["box"], f"#{d['id']} {d['name']} {d['score']:.2f}", colour, font_scale=0.45)
        return img

    def describe(self, result: dict) -> str:
        tracked = [d for d in result["detections"] if d["id"] is not None]
        c = result["tracks"]
        objects = ", ".join(f"{d['name']} #{d['id']}" for d in sorted(tracked, key=lambda d: d["id"])) or "no tracks"
        return f"frame {result['frame']}: {objects} (new {c['new']}, lost {c['lost']}, removed {c['removed']})"

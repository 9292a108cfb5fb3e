"""A detector as a MediaPipe ObjectDetector: without NMS in the graph (``detector``: locations and scores that
MediaPipe decodes with identity anchors and suppresses itself), or with it (``detector_nms``: the post-processing
layout of boxes, classes, scores and count). Both read back as the (B, max_det, 6) table a file exported with
nms=True gives."""

from __future__ import annotations

import json

import numpy as np
import torch

from visionkit.errors import ExportError
from visionkit.export import tflite_metadata
from visionkit.registry import register
from visionkit.runtime.mediapipe_kind import MediaPipeKind

MEDIAPIPE_NMS_IOU = 0.3  # ObjectDetector's own NMS (files without NMS in the graph); not settable from Python
# thresholds the writer's check runs a file without NMS at: low enough to compare many detections, few enough to
# stay quick; and those the backend reads such a file with (MediaPipe's NMS then stands for the task's)
CHECK_CONF, CHECK_MAX_DET = 0.05, 100
READ_CONF, READ_MAX_DET = 0.001, 300


def nms_of(metadata: dict) -> dict | None:
    """The NMS settings a file's metadata records (conf, iou, max_det), or None."""
    return json.loads(metadata.get("nms") or "null")


@register("mediapipe_kind", "detector")
class DetectorKind(MediaPipeKind):
    name = "detector"

    def create(self, vision, base, mode, score_threshold, max_results):
        return vision.ObjectDetector.create_from_options(
            vision.ObjectDetectorOptions(
                base_options=base, running_mode=mode, score_threshold=score_threshold, max_results=max_results
            )
        )

    def run(self, task, image, timestamp_ms, shape, runner):
        rows = []
        r = task.detect(image) if timestamp_ms is None else task.detect_for_video(image, timestamp_ms)
        for d in r.detections:
            b = d.bounding_box
            for c in d.categories:  # detections sharing one box come back as one Detection with several categories
                index = c.index if c.index is not None else runner.class_ids.get(c.category_name, -1)
                rows.append([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height, c.score, index])
        return {"rows": np.asarray(rows, np.float32).reshape(-1, 6)}

    def file_metadata(self, metadata):
        # MediaPipe runs NMS on this file: report its thresholds the way a file with NMS in it does
        return {**metadata, "nms": json.dumps({"conf": READ_CONF, "iou": MEDIAPIPE_NMS_IOU, "max_det": READ_MAX_DET})}

    def runner_options(self, metadata):
        nms = nms_of(metadata)
        return (float(nms["conf"]), int(nms["max_det"])) if nms else (CHECK_CONF, CHECK_MAX_DET)

    def outputs(self, results, metadata):
        max_det = int(nms_of(metadata)["max_det"])
        table = torch.zeros(len(results), max_det, 6)
        counts = torch.zeros(len(results), dtype=torch.long)
        for i, r in enumerate(results):
            rows = torch.from_numpy(r["rows"][:max_det]).clone()
            rows = rows[rows[:, 4].argsort(descending=True)]
            # MediaPipe truncates a box's origin and size to whole pixels: take the middle of each interval
            rows[:, :2] += 0.5
            rows[:, 2:4] += 1.0
            table[i, : len(rows)] = rows
            counts[i] = len(rows)
        return table, counts

    def write_metadata(self, model, names):
        boxes = tflite_metadata.output_shapes(model)[0][1]
        return tflite_metadata.write_detector(model, names, boxes)

    def compare(self, got, ref, size, metadata):
        from torchvision.ops import nms as tv_nms

        conf, max_det = self.runner_options(metadata)
        h, w = size
        scale = torch.tensor([h, w, h, w], dtype=torch.float32)
        yxhw, scores = ref[0][0], ref[1][0]
        yc, xc, bh, bw = (yxhw * scale).unbind(-1)
        corners = torch.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], -1)
        best, label = scores.max(-1)
        keep = best > conf
        corners, best, label = corners[keep], best[keep], label[keep]
        kept = tv_nms(corners, best, MEDIAPIPE_NMS_IOU)[:max_det]
        want = torch.cat([corners[kept], best[kept, None], label[kept, None].float()], 1)
        return detections_differ(torch.from_numpy(got["rows"]), want, conf)


@register("mediapipe_kind", "detector_nms")
class DetectorNMSKind(DetectorKind):
    name = "detector_nms"

    def file_metadata(self, metadata):
        return metadata

    def write_metadata(self, model, names):
        return tflite_metadata.write_detector_nms(model, names, _detector_output_order(model))

    def compare(self, got, ref, size, metadata):
        conf, _ = self.runner_options(metadata)
        h, w = size
        scale = torch.tensor([h, w, h, w], dtype=torch.float32)
        boxes, classes, scores, count = (t[0] for t in ref)
        n = int(count.reshape(-1)[0])
        ymin, xmin, ymax, xmax = (boxes[:n] * scale).unbind(-1)
        want = torch.stack([xmin, ymin, xmax, ymax, scores[:n], classes[:n]], -1)
        return detections_differ(torch.from_numpy(got["rows"]), want, conf)


def _detector_output_order(model: bytes) -> list[str]:
    """What each output of a post-processing-layout detector holds, by output position. The graph returns boxes,
    classes, scores, count; this checks the converted file kept that order (by shape), rather than trusting it."""
    shapes = tflite_metadata.output_shapes(model)
    expected = [("location", 3), ("category", 2), ("score", 2), ("count", 1)]
    if len(shapes) != 4 or [len(s) for s in shapes] != [r for _, r in expected] or shapes[0][-1] != 4:
        raise ExportError(
            f"the converted detector has outputs {shapes}; expected boxes (1, K, 4), classes (1, K), "
            f"scores (1, K), count (1)"
        )
    return [name for name, _ in expected]


def detections_differ(got: torch.Tensor, want: torch.Tensor, conf: float) -> list[str]:
    """MediaPipe's detections against PyTorch's: each matched to its nearest, the same class, the score within
    1e-3, the box's origin and size within 1 px (MediaPipe truncates both to whole pixels). Detections whose
    score is within 1e-3 of the threshold may be on either side of it."""

    def firm(rows):
        return rows[rows[:, 4] > conf + 1e-3]

    got, want = firm(got[got[:, 4].argsort(descending=True)]), firm(want[want[:, 4].argsort(descending=True)])
    if len(got) != len(want):
        return [f"{len(got)} detection(s) instead of {len(want)}"]
    if not len(got):
        return []
    got, want = _origin_size(got), _origin_size(want)
    # match each to its nearest of the same class (one box may be kept under two classes; ties may reorder)
    box_cost = (got[:, None, :4] - want[None, :, :4]).abs().amax(-1)
    other_class = got[:, None, 5] != want[None, :, 5]
    nearest = (box_cost + 1e6 * other_class + 1e3 * (got[:, None, 4] - want[None, :, 4]).abs()).argmin(1)
    problems = []
    box = float(box_cost.gather(1, nearest[:, None]).max())
    if box > 1.0 + 1e-3:
        problems.append(f"a box differs by {box:.2f} px (> 1 px)")
    if bool(other_class.gather(1, nearest[:, None]).any()):
        problems.append("a detection has another class")
    score = float((got[:, 4] - want[nearest, 4]).abs().max())
    if score > 1e-3:
        problems.append(f"a score differs by {score:.2g} (> 1e-3)")
    return problems


def _origin_size(rows: torch.Tensor) -> torch.Tensor:
    """x1 y1 x2 y2 → x y w h, MediaPipe's form of a box."""
    return torch.cat([rows[:, :2], rows[:, 2:4] - rows[:, :2], rows[:, 4:]], 1)

"""What an exported detector outputs. Pure tensor ops, correct for every batch size and image size a dynamic
model accepts (nothing is specialised to the traced shape)."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from visionkit.tasks.detect.graph_nms import detection_table, table_problems, topk_problems, topk_table


class DetectExport(nn.Module):
    """Outputs ``boxes`` (B, N, 4: x1, y1, x2, y2 in input pixels) and ``scores`` (B, N, C: sigmoid class
    scores) for the N anchor points; confidence filtering and NMS are left to the caller."""

    output_names = ("boxes", "scores")
    dynamic_output_axes = {"boxes": {0: "batch", 1: "anchors"}, "scores": {0: "batch", 1: "anchors"}}
    layout = (
        "boxes (B, N, 4) x1 y1 x2 y2 in input pixels; scores (B, N, num_classes) sigmoid; no NMS: keep "
        "boxes with score > conf, then class-aware NMS"
    )

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        if getattr(net.head, "end2end", False):  # the one-to-one branch: its top scores are the detections
            self.metadata = {"end2end": "true"}
            self.layout = (
                "boxes (B, N, 4) x1 y1 x2 y2 in input pixels; scores (B, N, num_classes) sigmoid; end-to-end "
                "(one-to-one branch): keep the boxes with score > conf, best first, up to max_det; no NMS"
            )

    def forward(self, x: torch.Tensor):
        return self.net.head.decode(self.net(x))


class DetectNMSExport(nn.Module):
    """NMS in the graph (ONNX NonMaxSuppression): outputs ``detections`` (B, max_det, 6: x1, y1, x2, y2 in input
    pixels, score, class) best first with zero rows after the valid ones, and ``num_detections`` (B,) int64."""

    output_names = ("detections", "num_detections")
    dynamic_output_axes = {"detections": {0: "batch"}, "num_detections": {0: "batch"}}

    def __init__(self, net: nn.Module, conf: float, iou: float, max_det: int):
        super().__init__()
        self.net, self.conf, self.iou, self.max_det = net, float(conf), float(iou), int(max_det)
        self.end2end = bool(getattr(net.head, "end2end", False))
        table = (
            f"detections (B, {self.max_det}, 6) x1 y1 x2 y2 (input pixels) score class, best first, "
            f"rows after num_detections are zero; num_detections (B,) int64"
        )
        if self.end2end:  # the one-to-one branch: the top scores are the detections, no NMS operator
            self.iou = None
            self.layout = f"{table}; end-to-end: one class per box, score > {self.conf:g}, the best, no NMS"
            self.summary = f"final detections in the graph (end-to-end: conf > {self.conf:g}, max_det {self.max_det})"
        else:
            self.layout = (
                f"{table}; NMS in the graph: one class per box, score > {self.conf:g}, per-class IoU > "
                f"{self.iou:g} suppressed"
            )
            self.summary = f"NMS in the graph (conf > {self.conf:g}, iou {self.iou:g}, max_det {self.max_det})"
        self.metadata = {"nms": json.dumps({"conf": self.conf, "iou": self.iou, "max_det": self.max_det})}
        if self.end2end:
            self.metadata["end2end"] = "true"

    def forward(self, x: torch.Tensor):
        boxes, scores = self.net.head.decode(self.net(x))
        if self.end2end:
            return topk_table(boxes, scores, self.conf, self.max_det)
        # ONNX NonMaxSuppression takes float32 only, so an fp16 export runs NMS in fp32
        return detection_table(boxes.float(), scores.float(), self.conf, self.iou, self.max_det)

    def check_split(self):
        """For the exporter's check: the network part (boxes, scores) to compare numerically, and a check that the
        file's table is a valid NMS result of onnxruntime's own network outputs (any tie-break)."""

        def verify(network_outputs: list[np.ndarray], file_outputs: list[np.ndarray]) -> list[str]:
            boxes, scores = (torch.from_numpy(np.asarray(o, np.float32)) for o in network_outputs)
            table, count = (torch.from_numpy(np.asarray(o)) for o in file_outputs)
            if self.end2end:
                return topk_problems(table, count, boxes, scores, self.conf, self.max_det)
            return table_problems(table, count, boxes, scores, self.conf, self.iou, self.max_det)

        return DetectExport(self.net).eval(), verify

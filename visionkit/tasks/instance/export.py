"""What an exported instance segmenter outputs. Pure tensor ops, correct for every batch and image size of a
dynamic export."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from visionkit.tasks.detect.graph_nms import detection_table, table_problems


class InstanceExport(nn.Module):
    """Outputs ``boxes`` (B, N, 4), ``scores`` (B, N, C), ``coefficients`` (B, N, M) for the N anchor points and
    ``prototypes`` (B, M, H/4, W/4); a kept object's mask is sigmoid(coefficients · prototypes) > 0.5 inside its
    box. Confidence filtering and NMS are left to the caller."""

    output_names = ("boxes", "scores", "coefficients", "prototypes")
    dynamic_output_axes = {
        "boxes": {0: "batch", 1: "anchors"},
        "scores": {0: "batch", 1: "anchors"},
        "coefficients": {0: "batch", 1: "anchors"},
        "prototypes": {0: "batch", 2: "proto_height", 3: "proto_width"},
    }
    layout = (
        "boxes (B, N, 4) x1 y1 x2 y2 in input pixels; scores (B, N, num_classes) sigmoid; coefficients (B, N, M); "
        "prototypes (B, M, H/4, W/4); no NMS: keep boxes with score > conf, class-aware NMS, then each kept "
        "object's mask = sigmoid(coefficients @ prototypes) > 0.5, resized to the input, inside its box"
    )

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.metadata = {"proto_stride": str(net.head.proto_stride)}

    def forward(self, x: torch.Tensor):
        outputs = self.net(x)
        boxes, scores = self.net.head.decode(outputs)
        _, coef, protos = self.net.head.split(outputs)
        return boxes, scores, coef, protos


class InstanceNMSExport(nn.Module):
    """NMS in the graph and the kept objects' masks assembled: ``detections`` (B, max_det, 6: x1, y1, x2, y2 in input
    pixels, score, class) best first with zero rows after the valid ones, ``num_detections`` (B,) int64 and
    ``masks`` (B, max_det, H/4, W/4): each row's mask probability (sigmoid), zero outside its box."""

    output_names = ("detections", "num_detections", "masks")
    dynamic_output_axes = {
        "detections": {0: "batch"},
        "num_detections": {0: "batch"},
        "masks": {0: "batch", 2: "proto_height", 3: "proto_width"},
    }

    def __init__(self, net: nn.Module, conf: float, iou: float, max_det: int):
        super().__init__()
        self.net, self.conf, self.iou, self.max_det = net, float(conf), float(iou), int(max_det)
        self.stride = float(net.head.proto_stride)
        self.layout = (
            f"detections (B, {self.max_det}, 6) x1 y1 x2 y2 (input pixels) score class, best first, rows after "
            f"num_detections are zero; num_detections (B,) int64; masks (B, {self.max_det}, H/4, W/4) probability "
            f"per row, zero outside its box (threshold 0.5, resize to the input); NMS in the graph: score > "
            f"{self.conf:g}, per-class IoU > {self.iou:g} suppressed"
        )
        self.summary = f"NMS and masks in the graph (conf > {self.conf:g}, iou {self.iou:g}, max_det {self.max_det})"
        self.metadata = {
            "nms": json.dumps({"conf": self.conf, "iou": self.iou, "max_det": self.max_det}),
            "proto_stride": str(self.stride),
        }

    def forward(self, x: torch.Tensor):
        outputs = self.net(x)
        boxes, scores = self.net.head.decode(outputs)
        _, coef, protos = self.net.head.split(outputs)
        table, count = detection_table(boxes.float(), scores.float(), self.conf, self.iou, self.max_det, coef.float())
        det, kept_coef = table[..., :6], table[..., 6:]
        ph, pw = protos.shape[-2:]
        masks = torch.einsum("bkm,bmhw->bkhw", kept_coef, protos.float()).sigmoid()
        ys = (torch.arange(ph, device=x.device, dtype=masks.dtype) + 0.5) * self.stride
        xs = (torch.arange(pw, device=x.device, dtype=masks.dtype) + 0.5) * self.stride
        x1, y1, x2, y2 = (det[..., i, None, None] for i in range(4))
        inside = (xs[None, None, None, :] >= x1) & (xs[None, None, None, :] < x2)
        inside = inside & (ys[None, None, :, None] >= y1) & (ys[None, None, :, None] < y2)
        return det, count, masks * inside.to(masks.dtype)

    def check_split(self):
        """For the exporter's check: the network part to compare numerically, and a check that the file's table is
        a valid NMS result of onnxruntime's own network outputs (any tie-break)."""

        def verify(network_outputs: list[np.ndarray], file_outputs: list[np.ndarray]) -> list[str]:
            boxes, scores = (torch.from_numpy(np.asarray(o, np.float32)) for o in network_outputs[:2])
            table, count = (torch.from_numpy(np.asarray(o)) for o in file_outputs[:2])
            problems = table_problems(table, count, boxes, scores, self.conf, self.iou, self.max_det)
            masks = np.asarray(file_outputs[2])
            if masks.shape[:2] != tuple(table.shape[:2]) or not np.isfinite(masks).all():
                problems.append(f"masks of shape {masks.shape} do not follow the table {tuple(table.shape)}")
            return problems

        return InstanceExport(self.net).eval(), verify

"""The modules that become .tflite graphs for MediaPipe Tasks: channels-last RGB input in 0..1 (MediaPipe scales
pixels by the metadata's mean 0 / std 255), the model's own normalisation inside the graph, and outputs in the
layout each MediaPipe Task reads. Plain tensor ops only: LiteRT cannot lower torchvision's NMS or ``torch.sort``,
so in-graph NMS is top-k plus an IoU-matrix suppression."""

from __future__ import annotations

import torch
from torch import nn

# ITU-R BT.601 luma, the weights OpenCV's BGR2GRAY uses when visionkit reads a grey model's images
_LUMA = (0.299, 0.587, 0.114)


class EdgeInput(nn.Module):
    """(1, H, W, 3) RGB in 0..1 → the (1, C, H, W) tensor the network was trained on: grey for 1-channel models,
    then (x - mean) / std per channel."""

    def __init__(self, channels: int, mean, std):
        super().__init__()
        self.channels = channels
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        if self.channels == 1:
            x = (x * self.luma).sum(1, keepdim=True)
        return (x - self.mean) / self.std


class ClassifierGraph(nn.Module):
    """ImageClassifier: one output (1, C) of class probabilities (softmax in the graph)."""

    kind = "classifier"

    def __init__(self, net: nn.Module, inputs: EdgeInput):
        super().__init__()
        self.net, self.inputs = net, inputs

    def forward(self, x):
        return self.net(self.inputs(x)).float().softmax(-1)


class SegmenterGraph(nn.Module):
    """ImageSegmenter: one output (1, H, W, C) of class logits (SOFTMAX in the metadata: confidence masks are
    probabilities, the category mask is the argmax)."""

    kind = "segmenter"

    def __init__(self, net: nn.Module, inputs: EdgeInput):
        super().__init__()
        self.net, self.inputs = net, inputs

    def forward(self, x):
        return self.net(self.inputs(x)).permute(0, 2, 3, 1)


class ValueMapGraph(nn.Module):
    """ImageSegmenter with one channel and activation NONE: ``confidence_masks[0]`` carries the values of
    ``values(net(x))`` (B, H, W) unchanged (a depth map; MediaPipe has no depth Task)."""

    kind = "value_map"

    def __init__(self, net: nn.Module, inputs: EdgeInput, values: nn.Module):
        super().__init__()
        self.net, self.inputs, self.values = net, inputs, values

    def forward(self, x):
        return self.values(self.net(self.inputs(x)))[..., None]


class DetectorGraph(nn.Module):
    """ObjectDetector without NMS: locations (1, N, 4: y_center, x_center, h, w, normalised to the input) and
    scores (1, N, C); MediaPipe decodes them with identity anchors and runs NMS. Boxes are clipped to the input
    first: MediaPipe reports a box as a clamped origin plus an unclamped size, which would misplace the far side
    of a box crossing the left or top edge."""

    kind = "detector"

    def __init__(self, net: nn.Module, inputs: EdgeInput, height: int, width: int):
        super().__init__()
        self.net, self.inputs = net, inputs
        self.register_buffer("scale", torch.tensor([1.0 / height, 1.0 / width, 1.0 / height, 1.0 / width]))

    def forward(self, x):
        boxes, scores = self.net.head.decode(self.net(self.inputs(x)))
        x1, y1, x2, y2 = (boxes.float() * self.scale[[1, 0, 1, 0]]).clamp(0.0, 1.0).unbind(-1)
        return torch.stack([(y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1], -1), scores.float()


class DetectorNMSGraph(DetectorGraph):
    """ObjectDetector with NMS in the graph, the post-processing layout: boxes (1, K, 4: ymin, xmin, ymax, xmax
    normalised), classes (1, K) float, scores (1, K), count (1,) float. Each box competes under its best class;
    greedy per-class suppression of IoU > ``iou`` among the ``candidates`` best boxes above ``conf``. An
    end-to-end head (one-to-one branch) needs no suppression: its best boxes above ``conf`` are the detections."""

    kind = "detector_nms"

    def __init__(
        self, net, inputs, height: int, width: int, conf: float, iou: float, max_det: int, candidates: int = 0
    ):
        super().__init__(net, inputs, height, width)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.candidates = int(candidates or max(4 * max_det, 256))
        self.end2end = bool(getattr(net.head, "end2end", False))

    def forward(self, x):
        yxhw, scores = super().forward(x)
        yc, xc, h, w = yxhw[0].unbind(-1)
        corners = torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)  # (N, 4)
        best, label = scores[0].max(-1)
        k = min(self.candidates, best.shape[0])
        top, idx = best.topk(k)  # best first
        boxes, label = corners[idx], label[idx].float()
        keep = top > self.conf if self.end2end else suppress(boxes, label, top, self.conf, self.iou)
        kept_score = torch.where(keep, top, torch.full_like(top, -1.0))
        out = min(self.max_det, k)
        score, order = kept_score.topk(out)  # kept boxes, still best first
        valid = score > 0
        zero = torch.zeros_like(score)
        count = valid.float().sum().reshape(1)
        return (
            torch.where(valid[:, None], boxes[order], torch.zeros_like(boxes[order]))[None],
            torch.where(valid, label[order], zero)[None],
            torch.where(valid, score, zero)[None],
            count,
        )


def suppress(boxes: torch.Tensor, label: torch.Tensor, score: torch.Tensor, conf: float, iou: float) -> torch.Tensor:
    """Greedy NMS over boxes sorted best first, as fixed-size tensor ops: a box is kept when its score is above
    ``conf`` and no kept, better box of its class overlaps it by IoU > ``iou``. Resolved by iterating
    ``keep = alive & ~any(kept better overlapping)`` to its fixed point, which is greedy NMS: box i's status only
    depends on better boxes, so after n rounds the n best are final."""
    y1, x1, y2, x2 = boxes.unbind(-1)
    area = (y2 - y1).clamp(min=0) * (x2 - x1).clamp(min=0)
    ih = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    iw = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    inter = ih * iw
    overlap = inter / (area[:, None] + area[None] - inter).clamp(min=1e-12) > iou
    n = boxes.shape[0]
    better = torch.ones(n, n, dtype=torch.bool).triu(1).T  # [i, j]: j ranks before i
    suppressors = (overlap & better & (label[:, None] == label[None])).float()  # [i, j]: j would suppress i
    alive = (score > conf).float()
    keep = alive
    for _ in range(_rounds(n)):
        keep = alive * (suppressors @ keep == 0).float()
    return keep > 0


def _rounds(n: int) -> int:
    """Fixed-point rounds for ``suppress``: exact when suppression chains are shorter than this (a chain of k
    boxes each suppressing the next needs k rounds; real detections rarely chain beyond a few)."""
    return min(n, 32)

"""Semantic segmentation: masks/ PNGs or polygon rows, U-Net on any backbone, cross-entropy (+ Dice), mIoU at each
image's original resolution, colour overlays and class-id PNGs, ONNX export of logits or the class map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from visionkit.cfg import Numbers, Range, Settings
from visionkit.data.format import mask_names, write_mask
from visionkit.data.rules import DatasetRules
from visionkit.data.transforms import content_box
from visionkit.errors import UsageError
from visionkit.registry import register
from visionkit.tasks.base import DataInfo
from visionkit.tasks.segment.dataset import SegmentationDataset
from visionkit.tasks.segment.explain import SegmentExplainer
from visionkit.tasks.segment.labelstudio import MaskRegions
from visionkit.tasks.segment.loss import segmentation_loss
from visionkit.tasks.segment.metrics import SegmentMetrics
from visionkit.tasks.shared import DenseTask, joint_augment_args, read_bgr, resolve_yaml_data, split_files

CV_MAX_CHANNELS = 512  # cv2.resize's channel limit
PALETTE = np.array(
    [
        (0, 0, 0),
        (56, 56, 255),
        (49, 210, 207),
        (10, 249, 72),
        (255, 194, 0),
        (187, 212, 0),
        (168, 153, 44),
        (134, 219, 61),
        (31, 112, 255),
        (255, 56, 132),
        (147, 69, 52),
        (255, 112, 31),
    ],
    np.uint8,
)  # BGR; class 0 (background) is drawn transparent


@register("task", "segment")
class SegmentTask(DenseTask):
    """Semantic segmentation: masks/ PNGs (or polygon rows), U-Net decoder, CE + Dice, mIoU at original resolution."""

    explainer = SegmentExplainer
    mediapipe_kind = "segmenter"
    labelstudio = MaskRegions()

    name = "segment"
    default_model = "unet-n"
    default_data = "shapes"
    dense_key = "mask"
    default_neck = "identity"
    default_head = "unet"
    backbone_strides = (2, 4, 8, 16, 32)  # or the deepest run of these the backbone has
    dataset_rules = DatasetRules(reads=("masks",), min_mask_classes=2, usable=("masks", "polygons", "empty label"))
    keys = {
        "argmax": (False, "export: output the uint8 class map instead of logits"),
        "dice": (
            0.5,
            "weight of the soft Dice loss added to cross-entropy (0 = cross-entropy only)",
            Range(float, 0, 100),
        ),
        "class_weights": (
            None,
            "cross-entropy weight per mask class, e.g. [0.5, 1, 2] (null = equal)",
            Numbers(Range(float, 0, 1e6)),
        ),
        "save_masks": (False, "predict: also save raw class-id PNGs (masks/<image>.png, original size)"),
    }

    # -- data -----------------------------------------------------------------------------------------------------
    def resolve_data(self, args: Settings) -> DataInfo:
        path, spec = resolve_yaml_data(args, self.default_data, self.name, self.dataset_rules)
        names = mask_names(spec)
        return DataInfo(names, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), source=str(path), extra={"spec": spec})

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings):
        files = split_files(data, split, train, args, self.dataset_rules)
        return SegmentationDataset(files, len(data.names), imgsz, train, joint_augment_args(args), args.verbose)

    # -- training and validation ---------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict[str, Any], args: Settings):
        weights = args.class_weights
        if weights is not None and len(weights) != outputs.shape[1]:
            raise UsageError(
                f"class_weights has {len(weights)} values but the model has {outputs.shape[1]} mask classes"
            )
        return segmentation_loss(outputs, batch["mask"], float(args.dice), weights)

    def new_metrics(self, names: list[str]) -> SegmentMetrics:
        return SegmentMetrics(names, self.class_maps)

    @staticmethod
    def class_maps(outputs: torch.Tensor, metas: list[dict], confidence: bool = False) -> list:
        """Network outputs (logits (B, C, H, W), or a class map (B, H, W) from a file exported with argmax=True) →
        one uint8 class map per image at its original size: the padding cropped, logits resized bilinearly
        before the argmax (a class map: nearest). ``confidence``: (class map, per-pixel softmax probability of
        the chosen class, or None for a class map) pairs instead."""
        maps = []
        for out, meta in zip(outputs, metas):
            rows, cols = content_box(meta["shape"], meta["scale"], meta["pad"])
            size = tuple(int(v) for v in meta["shape"])
            if out.ndim == 2:  # already class ids
                crop = out[rows, cols][None, None].float()
                cmap = F.interpolate(crop, size=size, mode="nearest")[0, 0].to(torch.uint8).cpu().numpy()
                maps.append((cmap, None) if confidence else cmap)
                continue
            if out.shape[0] <= CV_MAX_CHANNELS:  # OpenCV resize (channels last) + numpy argmax: the fastest on CPU
                hwc = np.ascontiguousarray(out[:, rows, cols].float().cpu().numpy().transpose(1, 2, 0))
                logits = cv2.resize(hwc, size[::-1], interpolation=cv2.INTER_LINEAR).reshape(*size, -1)
                cmap = logits.argmax(-1).astype(np.uint8)
                conf = None
                if confidence:  # softmax of the top logit, 1 / sum(exp(logit - top)), in the logits' own buffer
                    logits -= logits.max(-1, keepdims=True)
                    np.exp(logits, out=logits)
                    conf = 1.0 / logits.sum(-1)
            else:  # many classes: resize, argmax and confidence on the device; only (H, W) maps come back
                crop = out[:, rows, cols][None].float()
                logits = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0]
                top, idx = logits.max(0)
                cmap = idx.to(torch.uint8).cpu().numpy()
                conf = (1.0 / torch.exp(logits - top).sum(0)).cpu().numpy() if confidence else None
            maps.append((cmap, conf) if confidence else cmap)
        return maps

    # -- prediction ----------------------------------------------------------------------------------------------
    def postprocess(self, outputs, context: list, args: Settings, names: list[str]) -> list[dict]:
        results = []
        for mask, conf in self.class_maps(outputs, context, confidence=True):
            h, w = mask.shape
            counts = np.bincount(mask.ravel(), minlength=len(names))
            # a class's score: its pixels' mean probability (1.0 from a file that outputs class ids only)
            sums = np.bincount(mask.ravel(), weights=conf.ravel(), minlength=len(names)) if conf is not None else counts
            areas = [
                {
                    "class": int(c),
                    "name": names[c],
                    "pixels": int(n),
                    "fraction": round(float(n) / (h * w), 6),
                    "score": round(float(sums[c]) / int(n), 5),
                }
                for c, n in enumerate(counts[: len(names)])
                if n
            ]
            results.append({"width": int(w), "height": int(h), "classes": areas, "_mask": mask})
        return results

    def describe(self, result: dict) -> str:
        shown = [a for a in result["classes"] if a["class"] != 0] or result["classes"]
        return ", ".join(f"{a['name']} {a['fraction']:.1%}" for a in shown)

    def annotate(self, item, result: dict, channels: int):
        img = read_bgr(item).copy()
        mask = result["_mask"]
        colours = PALETTE[np.arange(int(mask.max()) + 1) % len(PALETTE)]
        overlay = colours[mask]
        drawn = mask > 0
        img[drawn] = (0.5 * img[drawn] + 0.5 * overlay[drawn]).astype(np.uint8)
        y = 18
        for a in result["classes"]:
            if a["class"] == 0:
                continue
            colour = tuple(int(v) for v in PALETTE[a["class"] % len(PALETTE)])
            cv2.rectangle(img, (6, y - 11), (18, y + 1), colour, -1)
            cv2.putText(
                img, f"{a['name']} {a['fraction']:.1%}", (22, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1
            )
            y += 16
        return img

    def save_result(self, item, result: dict, save_dir: Path, stem: str, args: Settings) -> None:
        if args.save_masks:
            write_mask(save_dir / "masks" / f"{stem}.png", result["_mask"])

    def export_wrapper(self, net, args: Settings):
        from visionkit.tasks.segment.export import SegmentArgmaxExport, SegmentExport

        return SegmentArgmaxExport(net) if args.argmax else SegmentExport(net)

    def edge_graph(self, net, inputs, size, args: Settings):
        from visionkit.export.graphs import SegmenterGraph

        self.export_wrapper(net, args.replace(argmax=False))  # MediaPipe takes the argmax itself (category mask)
        return SegmenterGraph(net, inputs)

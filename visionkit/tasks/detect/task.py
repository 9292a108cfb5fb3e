"""Object detection: YOLO-layout data, task-aligned loss, COCO-exact validation, NMS post-processing."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms

from visionkit.cfg import Range, Settings
from visionkit.data.format import sidecar_path, write_image
from visionkit.data.rules import DatasetRules, objects_problem, refuse
from visionkit.registry import register
from visionkit.tasks.base import DataInfo, Task
from visionkit.tasks.detect.dataset import DetectionDataset, collate
from visionkit.tasks.detect.explain import DetectExplainer
from visionkit.tasks.detect.labelstudio import BoxRegions
from visionkit.tasks.detect.loss import DetectionLoss, EndToEndLoss
from visionkit.tasks.detect.metrics import DetectMetrics
from visionkit.tasks.shared import (
    close_mosaic_epoch,
    joint_augment_args,
    letterbox_batch,
    read_bgr,
    resolve_yaml_data,
    split_files,
)

COLOURS = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
]


def draw_box(img: np.ndarray, box, label: str, colour, thickness: int = 2, font_scale: float = 0.5) -> None:
    """A box with its label on a filled tab above it, in place (BGR uint8)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.rectangle(img, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, y1), colour, -1)
    cv2.putText(img, label, (x1 + 1, max(th, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, max_det: int, classes: list[int] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image: best class per box, confidence filter, class-aware NMS, at most ``max_det`` boxes.
    Returns [(boxes (K, 4), scores (K,), classes (K,))]."""
    out = []
    for b, s in zip(boxes, scores):
        b, best, cls = _candidates(b, s, conf, classes)
        if len(best) > 30 * max_det:  # NMS cost grows fast; the lowest scores never survive anyway
            top = best.topk(30 * max_det).indices
            b, best, cls = b[top], best[top], cls[top]
        kept = batched_nms(b.float(), best.float(), cls, iou)[:max_det]
        out.append((b[kept], best[kept], cls[kept]))
    return out


def _candidates(boxes: torch.Tensor, scores: torch.Tensor, conf: float, classes: list[int] | None):
    """One image's boxes under their best class, above ``conf`` and in ``classes``: (boxes, scores, classes)."""
    best, cls = scores.max(1)
    keep = best > conf
    if classes is not None:
        keep &= torch.isin(cls, torch.as_tensor(classes, device=cls.device))
    return boxes[keep], best[keep], cls[keep]


def top_detections(
    boxes: torch.Tensor, scores: torch.Tensor, conf: float, max_det: int, classes: list[int] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """An end-to-end head's detections: per image, best class per box, confidence filter, the ``max_det`` best.
    No NMS: its one-to-one branch gives one anchor per object."""
    out = []
    for b, s in zip(boxes, scores):
        b, best, cls = _candidates(b, s, conf, classes)
        top = best.topk(min(max_det, len(best))).indices
        out.append((b[top], best[top], cls[top]))
    return out


def table_detections(
    table: torch.Tensor, count: torch.Tensor, conf: float, max_det: int, classes: list[int] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """An in-graph NMS table (B, M, 6) + valid counts (B,) → [(boxes, scores, classes)] per image, with the
    caller's confidence, class and max_det filters applied on top of the file's."""
    out = []
    for rows, n in zip(table, count):
        rows = rows[: int(n)]
        keep = rows[:, 4] > conf
        if classes is not None:
            keep &= torch.isin(rows[:, 5].long(), torch.as_tensor(classes))
        rows = rows[keep][:max_det]
        out.append((rows[:, :4], rows[:, 4], rows[:, 5].long()))
    return out


@register("task", "detect")
class DetectTask(Task):
    """Object detection: YOLO datasets (boxes or polygons), mosaic/affine/HSV augmentation, TAL + CIoU + DFL
    loss, pycocotools mAP."""

    explainer = DetectExplainer
    mediapipe_kind = "detector"
    labelstudio = BoxRegions()

    name = "detect"
    loss_sums_over_batch = True  # the detection loss is a per-image loss times the batch size
    default_model = "yolo-n"
    default_data = "shapes"
    default_neck = "pan"
    default_head = "yolo"
    modes = ("track",)
    dataset_rules = DatasetRules(reads=("labels",), names=True, objects=True)
    keys = {
        "conf": (
            0.25,
            "confidence threshold of predict, explain and export nms=True (val always scores every box above 0.001)",
            Range(float, 0, 1),
        ),
        "nms": (False, "export: NMS inside the graph with conf/iou/max_det baked in"),
        "allow_empty": (
            False,
            "train/val on a split without any labelled object (background images only); else such a split is refused",
        ),
        "box": (7.5, "CIoU box loss gain", Range(float, 0, 1000)),
        "cls": (0.5, "classification (BCE) loss gain", Range(float, 0, 1000)),
        "dfl": (1.5, "distribution focal loss gain", Range(float, 0, 1000)),
    }

    def __init__(self):
        self.head = None
        self.graph_nms = None
        self.loss_fn = None

    # -- data -----------------------------------------------------------------------------------------------------
    def resolve_data(self, args: Settings) -> DataInfo:
        path, spec = resolve_yaml_data(args, self.default_data, self.name, self.dataset_rules)
        return DataInfo(spec["names"], 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), source=str(path), extra={"spec": spec})

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings):
        files = split_files(data, split, train, args, self.dataset_rules)
        cache_dir = sidecar_path(files[0]).parent
        cache_dir = cache_dir if cache_dir.is_dir() else None
        ds = DetectionDataset(files, data.names, imgsz, train, joint_augment_args(args), cache_dir, args.verbose)
        n_objects = sum(len(lab) for lab in ds.labels)
        refuse([objects_problem(split, data.source, n_objects, ds.files, args.allow_empty)])
        return ds

    def collate_fn(self):
        return collate

    def preprocess_batch(self, batch, device: torch.device) -> dict[str, Any]:
        imgs, targets, metas = batch
        nb = device.type == "cuda"
        return {"img": imgs.to(device, non_blocking=nb).float() / 255, "targets": targets.to(device), "meta": metas}

    def epoch_start(self, trainer) -> None:
        close_mosaic_epoch(trainer)

    # -- model-bound pieces -----------------------------------------------------------------------------------------
    def bind(self, model) -> None:
        self.head = getattr(model, "head", None)  # an exported file (runtime backend) has none
        # a file exported with nms=True carries the thresholds baked into its graph
        baked = ((getattr(model, "meta", None) or {}).get("metadata") or {}).get("nms")
        self.graph_nms = json.loads(baked) if baked else None
        file_says = ((getattr(model, "meta", None) or {}).get("metadata") or {}).get("end2end") == "true"
        self.end2end = bool(getattr(self.head, "end2end", False)) or file_says  # NMS-free: top scores are the boxes
        self.loss_fn = None

    def export_wrapper(self, net, args: Settings):
        from visionkit.tasks.detect.export import DetectExport, DetectNMSExport

        if args.nms:
            return DetectNMSExport(net, float(args.conf), float(args.iou), int(args.max_det))
        return DetectExport(net)

    def edge_graph(self, net, inputs, size, args: Settings):
        from visionkit.export.graphs import DetectorGraph, DetectorNMSGraph

        self.export_wrapper(net, args)  # the same refusals (argmax=)
        h, w = size
        if args.nms:
            graph = DetectorNMSGraph(net, inputs, h, w, float(args.conf), float(args.iou), int(args.max_det))
            iou = None if graph.end2end else graph.iou  # an end-to-end graph suppresses nothing
            graph.metadata = {"nms": json.dumps({"conf": graph.conf, "iou": iou, "max_det": graph.max_det})}
            if graph.end2end:
                graph.metadata["end2end"] = "true"
            return graph
        return DetectorGraph(net, inputs, h, w)

    def detections(self, outputs, conf: float, iou: float, max_det: int, classes=None):
        """Raw head outputs (PyTorch), decoded boxes + scores (an exported file) or an NMS table (a file exported
        with nms=True) → [(boxes, scores, classes)] per image."""
        if self.graph_nms is not None:
            return table_detections(*outputs, conf, max_det, classes)
        if isinstance(outputs, tuple) and len(outputs) == 2:
            boxes, scores = outputs
        else:
            boxes, scores = self.head.decode(outputs)
        if self.end2end:
            return top_detections(boxes, scores, conf, max_det, classes)
        return nms(boxes, scores, conf, iou, max_det, classes)

    def check_graph_nms(self, conf: float, iou: float, purpose: str) -> None:
        """NMS baked into a file cannot be re-run: say so when the asked thresholds differ from the file's."""
        baked = self.graph_nms
        if baked is None:
            return
        nms_iou = baked["iou"]  # None: an end-to-end file, whose graph selects the top scores without NMS
        if conf < baked["conf"] or (nms_iou is not None and iou != nms_iou):
            selection = "NMS" if nms_iou is not None else "its final selection"
            thresholds = f"conf > {baked['conf']:g}" + (f", iou {nms_iou:g}" if nms_iou is not None else "")
            warnings.warn(
                f"this exported file has {selection} in the graph ({thresholds}, "
                f"max_det {baked['max_det']}); {purpose} asks for conf {conf:g}, iou {iou:g} and gets the "
                f"file's detections filtered to conf > {max(conf, baked['conf']):g}. Export with nms=False "
                f"(or matching conf=/iou=) for other thresholds",
                stacklevel=3,
            )

    def loss(self, outputs, batch: dict[str, Any], args: Settings):
        if self.loss_fn is None:
            kind = EndToEndLoss if getattr(self.head, "end2end", False) else DetectionLoss
            self.loss_fn = kind(self.head, float(args.box), float(args.cls), float(args.dfl))
        total, parts = self.loss_fn(outputs, batch["targets"], tuple(batch["img"].shape[-2:]))
        return total, {"loss": float(total.detach()) / batch["img"].shape[0], **parts}

    def new_metrics(self, names: list[str]) -> DetectMetrics:
        self.check_graph_nms(0.001, 0.7, "validation (mAP over all confidences)")
        return DetectMetrics(names, self._val_postprocess)

    def _val_postprocess(self, outputs, metas: list[dict]) -> list[dict]:
        return [self._to_original(b, s, c, m) for (b, s, c), m in zip(self.detections(outputs, 0.001, 0.7, 300), metas)]

    @staticmethod
    def _to_original(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, meta: dict) -> dict:
        """Letterboxed input pixels → original image pixels, clipped. ``meta["scale"]`` is (x, y): an image
        resized before the letterbox has a rounded short side, so its two axes scale slightly differently."""
        h0, w0 = meta["shape"]
        left, top = meta["pad"]
        b = boxes.float().cpu().numpy().copy()
        sx, sy = meta["scale"]
        b[:, [0, 2]] = ((b[:, [0, 2]] - left) / sx).clip(0, w0)
        b[:, [1, 3]] = ((b[:, [1, 3]] - top) / sy).clip(0, h0)
        return {"boxes": b, "scores": scores.float().cpu().numpy(), "classes": classes.cpu().numpy()}

    # -- prediction -----------------------------------------------------------------------------------------------
    def load_inputs(self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False):
        return letterbox_batch(items, imgsz, rect)

    def postprocess(self, outputs, context: list, args: Settings, names: list[str]) -> list[dict]:
        conf = float(args.conf)
        self.check_graph_nms(conf, float(args.iou), "predict")
        dets = self.detections(outputs, conf, float(args.iou), int(args.max_det), args.classes)
        results = []
        for (b, s, c), ctx in zip(dets, context):
            d = self._to_original(b, s, c, ctx)
            h0, w0 = ctx["shape"]
            results.append(
                {
                    "width": int(w0),
                    "height": int(h0),
                    "detections": [
                        {
                            "class": int(k),
                            "name": names[int(k)],
                            "score": round(float(sc), 5),
                            "box": [round(float(v), 2) for v in bx],
                        }
                        for bx, sc, k in zip(d["boxes"], d["scores"], d["classes"])
                    ],
                }
            )
        return results

    def track(self, model, args: Settings):
        """``visionkit detect track``: detections with identities through a video, a folder of frames, a webcam or
        frames given one call at a time (``persist=True``), with ByteTrack or BoT-SORT (``tracker=``)."""
        from visionkit.tasks.detect.track import DetectTracking

        return model.run_tracking(DetectTracking(), args)

    def describe(self, result: dict) -> str:
        from collections import Counter

        counts = Counter(d["name"] for d in result["detections"])
        return ", ".join(f"{n} {k}" for k, n in counts.items()) or "no detections"

    def annotate(self, item, result: dict, channels: int):
        img = read_bgr(item).copy()
        for d in result["detections"]:
            draw_box(img, d["box"], f"{d['name']} {d['score']:.2f}", COLOURS[d["class"] % len(COLOURS)])
        return img

    def yolo_rows(self, result: dict) -> list[str]:
        """save_txt: one ``cls cx cy w h score`` row per detection, normalised to the original image."""
        w, h = result["width"], result["height"]
        rows = []
        for d in result["detections"]:
            x1, y1, x2, y2 = d["box"]
            rows.append(
                f"{d['class']} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                f"{(y2 - y1) / h:.6f} {d['score']:.5f}"
            )
        return rows

    def plot_batch(self, batch, path: Path, names: list[str]) -> Path:
        """A grid of the first training batch with its boxes, to check the augmentation by eye."""
        imgs, targets, _ = batch
        n = min(len(imgs), 16)
        s = imgs.shape[-1]
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        grid = np.full((rows * s, cols * s, 3), 114, np.uint8)
        for i in range(n):
            img = np.ascontiguousarray(imgs[i].numpy().transpose(1, 2, 0)[..., ::-1])
            for t in targets[targets[:, 0] == i].numpy():
                cls, cx, cy, w, h = t[1:]
                colour = COLOURS[int(cls) % len(COLOURS)]
                p1 = (int((cx - w / 2) * s), int((cy - h / 2) * s))
                cv2.rectangle(img, p1, (int((cx + w / 2) * s), int((cy + h / 2) * s)), colour, 1)
                cv2.putText(
                    img, names[int(cls)], (p1[0], max(10, p1[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1
                )
            r, c = divmod(i, cols)
            grid[r * s : (r + 1) * s, c * s : (c + 1) * s] = img
        write_image(path, grid)
        return path

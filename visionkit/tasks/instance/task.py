"""Instance segmentation: a box, a class and a mask per object. Built on the detection task (data layout, boxes,
assignment, NMS) with YOLACT mask coefficients and prototypes; masks are scored by pycocotools at each image's
original size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from visionkit.cfg import Range, Settings
from visionkit.data.format import sidecar_path
from visionkit.data.rules import DatasetRules, objects_problem, refuse
from visionkit.errors import UsageError
from visionkit.registry import register
from visionkit.tasks.base import DataInfo
from visionkit.tasks.detect.task import COLOURS, DetectTask, draw_box
from visionkit.tasks.instance.dataset import InstanceDataset, collate
from visionkit.tasks.instance.explain import InstanceExplainer
from visionkit.tasks.instance.labelstudio import ObjectRegions
from visionkit.tasks.instance.loss import InstanceLoss
from visionkit.tasks.instance.masks import assemble, polygons, to_rle
from visionkit.tasks.instance.metrics import InstanceMetrics
from visionkit.tasks.shared import joint_augment_args, read_bgr, split_files

VAL_MAX_DET = 100  # COCO scores the 100 best per image; assembling more masks would only cost time


def select(boxes, scores, conf: float, iou: float | None, max_det: int, classes=None) -> list[torch.Tensor]:
    """Per image, the indices of the kept anchors: best class per anchor, above ``conf``, in ``classes``,
    class-aware NMS at ``iou`` (None: the top scores, for an end-to-end head), at most ``max_det``, best first."""
    out = []
    for b, s in zip(boxes, scores):
        best, cls = s.max(1)
        keep = best > conf
        if classes is not None:
            keep &= torch.isin(cls, torch.as_tensor(classes, device=cls.device))
        idx = torch.nonzero(keep).flatten()
        if len(idx) > 30 * max_det:  # NMS cost grows fast; the lowest scores never survive anyway
            idx = idx[best[idx].topk(30 * max_det).indices]
        if iou is None:
            order = best[idx].argsort(descending=True)[:max_det]
        else:
            order = batched_nms(b[idx].float(), best[idx].float(), cls[idx], iou)[:max_det]
        out.append(idx[order])
    return out


@register("task", "instance")
class InstanceTask(DetectTask):
    """Instance segmentation: YOLO-seg polygon rows and exact masks (``instances/``), the shared joint
    augmentation moving every object's mask, detection loss + cropped mask BCE, pycocotools box and mask mAP."""

    name = "instance"
    default_model = "yolo-n-seg"
    default_data = "shapes"
    default_head = "yolo_seg"
    explainer = InstanceExplainer
    labelstudio = ObjectRegions()
    mediapipe_kind = None
    # box rows alone train no mask: an image needs polygon rows or exact masks; `data check` without task= applies
    # these rules where instances/ exists (a polygon dataset is checked as detection's, which reads it the same)
    dataset_rules = DatasetRules(reads=("instances",), names=True, objects=True, usable=("polygons", "instances"))
    keys = {
        **DetectTask.keys,
        "nms": (
            False,
            "export: NMS inside the graph, and the kept objects' masks assembled (conf/iou/max_det baked in)",
        ),
        "mask": (7.5, "mask loss gain (BCE inside each object's box, normalised by its area)", Range(float, 0, 1000)),
        "mask_dice": (0.0, "gain of a Dice loss on the same cropped masks (0 = BCE only)", Range(float, 0, 1000)),
        "save_masks": (
            False,
            "predict: also save an instance-id PNG per image (instances/<image>.png, 16-bit, "
            "original size; 0 = no object, k = the k-th object of predictions.json)",
        ),
        "save_json": (
            False,
            "val: write predictions_coco.json (bbox + RLE segmentation, the data's category ids) "
            "and ground_truth_coco.json, for pycocotools",
        ),
    }

    # -- data -----------------------------------------------------------------------------------------------------
    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings):
        files = split_files(data, split, train, args, self.dataset_rules)
        cache_dir = sidecar_path(files[0]).parent
        cache_dir = cache_dir if cache_dir.is_dir() else None
        ds = InstanceDataset(files, data.names, imgsz, train, joint_augment_args(args), cache_dir, args.verbose)
        n_objects = sum(len(o.classes) for o in ds.objects)
        refuse([objects_problem(split, data.source, n_objects, ds.files, args.allow_empty)])
        return ds

    def collate_fn(self):
        return collate

    def preprocess_batch(self, batch, device: torch.device) -> dict[str, Any]:
        imgs, targets, masks, metas = batch
        nb = device.type == "cuda"
        return {
            "img": imgs.to(device, non_blocking=nb).float() / 255,
            "targets": targets.to(device),
            "masks": masks.to(device, non_blocking=nb),
            "meta": metas,
        }

    def plot_batch(self, batch, path: Path, names: list[str]) -> Path:
        imgs, targets, _, metas = batch
        return super().plot_batch((imgs, targets, metas), path, names)

    # -- training -------------------------------------------------------------------------------------------------
    def bind(self, model) -> None:
        super().bind(model)
        if self.graph_nms is not None or self.end2end:
            raise UsageError(
                "instance files exported with nms=True are read by onnxruntime directly; validate and "
                "predict with the .pt or a file exported with nms=False"
            )

    def loss(self, outputs, batch: dict[str, Any], args: Settings):
        if self.loss_fn is None:
            self.loss_fn = InstanceLoss(
                self.head, float(args.box), float(args.cls), float(args.dfl), float(args.mask), float(args.mask_dice)
            )
        total, parts = self.loss_fn(outputs, batch["targets"], batch["masks"], tuple(batch["img"].shape[-2:]))
        return total, {"loss": float(total.detach()) / batch["img"].shape[0], **parts}

    def new_metrics(self, names: list[str]) -> InstanceMetrics:
        return InstanceMetrics(names, self._val_postprocess)

    # -- post-processing --------------------------------------------------------------------------------------------
    def _parts(self, outputs):
        """(boxes (B, N, 4), scores (B, N, C), coefficients (B, N, M), prototypes (B, M, Hp, Wp)) from the network's
        raw outputs or an exported file's."""
        if isinstance(outputs, (tuple, list)) and len(outputs) == 4:
            return outputs
        boxes, scores = self.head.decode(outputs)
        _, coef, protos = self.head.split(outputs)
        return boxes, scores, coef, protos

    def objects(
        self, outputs, metas: list[dict], input_hw, conf: float, iou: float, max_det: int, classes=None, as_rle=False
    ):
        """Per image: boxes (K, 4) original pixels, scores, classes, and masks (K, h0, w0) bool (``as_rle``: ``rles``,
        their COCO RLE)."""
        boxes, scores, coef, protos = self._parts(outputs)
        out = []
        for i, (idx, meta) in enumerate(zip(select(boxes, scores, conf, iou, max_det, classes), metas)):
            best, cls = scores[i, idx].max(1)
            d = self._to_original(boxes[i, idx], best, cls, meta)
            d["rles" if as_rle else "masks"] = assemble(
                coef[i, idx], protos[i], d["boxes"], meta["shape"], meta["scale"], meta["pad"], input_hw, as_rle
            )
            out.append(d)
        return out

    def _val_postprocess(self, outputs, metas: list[dict]) -> list[dict]:
        return self.objects(outputs, metas, metas[0]["input_hw"], 0.001, 0.7, VAL_MAX_DET, as_rle=True)

    def load_inputs(self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False):
        batch, context = super().load_inputs(items, imgsz, channels, mean, std, rect)
        for c in context:
            c["input_hw"] = tuple(batch.shape[-2:])
        return batch, context

    def postprocess(self, outputs, context: list, args: Settings, names: list[str]) -> list[dict]:
        dets = self.objects(
            outputs, context, context[0]["input_hw"], float(args.conf), float(args.iou), int(args.max_det), args.classes
        )
        results = []
        for d, ctx in zip(dets, context):
            h0, w0 = ctx["shape"]
            found = []
            for bx, sc, k, m in zip(d["boxes"], d["scores"], d["classes"], d["masks"]):
                found.append(
                    {
                        "class": int(k),
                        "name": names[int(k)],
                        "score": round(float(sc), 5),
                        "box": [round(float(v), 2) for v in bx],
                        "mask": to_rle(m),
                        "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in next(iter(polygons(m)), [])],
                        "area": int(m.sum()),
                    }
                )
            results.append({"width": int(w0), "height": int(h0), "detections": found, "_masks": d["masks"]})
        return results

    def track(self, model, args: Settings):
        """``visionkit instance track``: objects with identities (tracked by box, ByteTrack or BoT-SORT) and
        their masks through a video, a folder of frames or a webcam."""
        from visionkit.tasks.instance.track import InstanceTracking

        return model.run_tracking(InstanceTracking(), args)

    def describe(self, result: dict) -> str:
        return super().describe(result).replace("no detections", "no objects")

    def annotate(self, item, result: dict, channels: int):
        img = read_bgr(item).copy()
        masks = result["_masks"]
        for j in range(len(masks) - 1, -1, -1):  # the best object is drawn last, on top
            colour = np.asarray(COLOURS[j % len(COLOURS)], np.float32)
            m = masks[j]
            img[m] = (0.55 * img[m] + 0.45 * colour).astype(np.uint8)
        for j, d in enumerate(result["detections"]):
            # one colour per object: touching objects of a class stay apart
            draw_box(img, d["box"], f"{d['name']} {d['score']:.2f}", COLOURS[j % len(COLOURS)], 1, 0.45)
        return img

    def yolo_rows(self, result: dict) -> list[str]:
        """save_txt: one YOLO-seg row per object, ``cls x1 y1 x2 y2 ... score`` (its largest piece's outline,
        normalised to the original image)."""
        w, h = result["width"], result["height"]
        rows = []
        for d in result["detections"]:
            if len(d["polygon"]) < 3:
                continue
            coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in d["polygon"])
            rows.append(f"{d['class']} {coords} {d['score']:.5f}")
        return rows

    def save_result(self, item, result: dict, save_dir: Path, stem: str, args: Settings) -> None:
        if not args.save_masks:
            return
        from visionkit.data.format import write_image

        masks = result["_masks"]
        ids = np.zeros((result["height"], result["width"]), np.uint16)
        for j in range(len(masks) - 1, -1, -1):  # where objects overlap, the better one keeps the pixel
            ids[masks[j]] = j + 1
        path = save_dir / "instances" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, ids)

    # -- export ---------------------------------------------------------------------------------------------------
    def export_wrapper(self, net, args: Settings):
        from visionkit.tasks.instance.export import InstanceExport, InstanceNMSExport

        if args.nms:
            return InstanceNMSExport(net, float(args.conf), float(args.iou), int(args.max_det))
        return InstanceExport(net)

    def edge_graph(self, net, inputs, size, args: Settings):
        raise UsageError(
            "MediaPipe Tasks has no instance-segmentation Task, so `format=mediapipe` cannot give a file that "
            "MediaPipe reads; export format=onnx (onnxruntime, also on phones) or train `visionkit segment` "
            "(semantic masks, MediaPipe ImageSegmenter) or `visionkit detect` (MediaPipe ObjectDetector)"
        )

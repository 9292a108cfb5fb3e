"""Instance metrics: box and mask mAP50-95 / mAP50 from pycocotools (``iouType="bbox"`` and ``"segm"`` on RLE at
each image's original size, crowd regions as COCO ignore regions), and the COCO-format results a user can score
with pycocotools directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.tasks.base import Metrics
from visionkit.tasks.detect.metrics import coco_eval


def _ann(ann_id: int, img_id: int, cls: int, rle: dict, crowd: bool) -> dict:
    from pycocotools import mask as mask_utils

    counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
    return {
        "id": ann_id,
        "image_id": img_id,
        "category_id": int(cls),
        "segmentation": {"size": list(rle["size"]), "counts": counts},
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": int(crowd),
    }


class InstanceMetrics(Metrics):
    fitness_key = "mask_mAP50-95"

    def __init__(self, names: list[str], postprocess):
        self.names = names
        self.postprocess = postprocess  # raw outputs + metas → per image boxes, scores, classes, rles (original size)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.box_dets: list[dict] = []
        self.mask_dets: list[dict] = []
        self.evals: dict[str, Any] = {}

    def update(self, outputs, batch: dict[str, Any]) -> None:
        results = self.postprocess(outputs, batch["meta"])
        for meta, det in zip(batch["meta"], results):
            img_id = len(self.images) + 1
            h0, w0 = meta["shape"]
            self.images.append({"id": img_id, "width": int(w0), "height": int(h0), "file_name": meta["file"]})
            objects = meta["objects"]
            for cls, rle in zip(objects.classes.tolist(), objects.rles):
                self.annotations.append(_ann(len(self.annotations) + 1, img_id, cls, rle, False))
            for cls, rle in objects.crowd:
                self.annotations.append(_ann(len(self.annotations) + 1, img_id, cls, rle, True))
            for box, score, cls, rle in zip(
                det["boxes"].tolist(), det["scores"].tolist(), det["classes"].tolist(), det["rles"]
            ):
                x1, y1, x2, y2 = box
                common = {"image_id": img_id, "category_id": int(cls), "score": float(score)}
                self.box_dets.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1]})
                self.mask_dets.append({**common, "segmentation": rle})

    def coco_gt(self) -> dict:
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i, "name": n} for i, n in enumerate(self.names)],
        }

    def compute(self) -> dict[str, float]:
        gt = self.coco_gt()
        # pycocotools' loadRes writes area, id and iscrowd into the results it reads: give it copies, so the
        # results saved for the user hold only what was predicted
        self.evals = {
            "box": coco_eval(gt, [dict(d) for d in self.box_dets], "bbox"),
            "mask": coco_eval(gt, [dict(d) for d in self.mask_dets], "segm"),
        }
        out = {}
        for kind, ev in self.evals.items():
            out[f"{kind}_mAP50"] = float(ev.stats[1])
            out[f"{kind}_mAP50-95"] = float(ev.stats[0])
        return out

    def per_class_ap(self, kind: str) -> dict[str, tuple[float, float]]:
        """{name: (AP50-95, AP50)} of ``kind`` (box or mask)."""
        prec = self.evals[kind].eval["precision"]
        out = {}
        for k, name in enumerate(self.names):
            pk = prec[:, :, k, 0, -1]
            p50 = prec[0, :, k, 0, -1]
            out[name] = (
                float(pk[pk > -1].mean()) if (pk > -1).any() else float("nan"),
                float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan"),
            )
        return out

    def table(self) -> str:
        if not self.evals:
            self.compute()
        counts = np.bincount(
            [a["category_id"] for a in self.annotations if not a["iscrowd"]], minlength=len(self.names)
        )
        width = max(8, *(len(n) for n in self.names))
        box, mask = self.evals["box"].stats, self.evals["mask"].stats
        lines = [
            f"{'class':>{width}}  {'images':>7}  {'objects':>7}  {'box50':>7}  {'box50-95':>8}  {'mask50':>7}  "
            f"{'mask50-95':>9}",
            f"{'all':>{width}}  {len(self.images):>7}  {int(counts.sum()):>7}  {box[1]:>7.4f}  {box[0]:>8.4f}  "
            f"{mask[1]:>7.4f}  {mask[0]:>9.4f}",
        ]
        box_ap, mask_ap = self.per_class_ap("box"), self.per_class_ap("mask")
        for k, name in enumerate(self.names):
            (b, b50), (m, m50) = box_ap[name], mask_ap[name]
            lines.append(
                f"{name:>{width}}  {'':>7}  {int(counts[k]):>7}  {b50:>7.4f}  {b:>8.4f}  {m50:>7.4f}  {m:>9.4f}"
            )
        return "\n".join(lines)

    def save(self, save_dir: Path, args) -> list[Path]:
        """With ``save_json=True``: COCO-format results (bbox and RLE segmentation per detection, category ids of the
        data's names) and the ground truth they were scored against, for pycocotools."""
        if not args.save_json:
            return []
        results = [{**b, "segmentation": m["segmentation"]} for b, m in zip(self.box_dets, self.mask_dets)]
        paths = [save_dir / "predictions_coco.json", save_dir / "ground_truth_coco.json"]
        paths[0].write_text(json.dumps(results))
        paths[1].write_text(json.dumps(self.coco_gt()))
        return paths

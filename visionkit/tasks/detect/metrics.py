"""Detection metrics: mAP50-95 and mAP50 from pycocotools' COCOeval on predictions converted in memory (the
reported numbers), plus precision/recall, per-class AP, PR curves and a confusion matrix."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from visionkit.tasks.base import Metrics


def coco_eval(gt: dict, dets: list[dict], iou_type: str = "bbox"):
    """Run COCOeval (``iou_type`` bbox or segm) quietly; returns the evaluated COCOeval object."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        if not dets:
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


class DetectMetrics(Metrics):
    fitness_key = "mAP50-95"

    def __init__(self, names: list[str], postprocess, conf_matrix: float = 0.25, iou_matrix: float = 0.45):
        self.names = names
        self.postprocess = postprocess  # raw outputs + metas → per-image detections in original pixels
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.dets: list[dict] = []
        n = len(names)
        self.confusion = np.zeros((n + 1, n + 1), np.int64)  # rows: true (last = background), cols: predicted
        self.conf_matrix, self.iou_matrix = conf_matrix, iou_matrix
        self.ev = None

    def update(self, outputs, batch: dict[str, Any]) -> None:
        results = self.postprocess(outputs, batch["meta"])
        for meta, det in zip(batch["meta"], results):
            img_id = len(self.images) + 1
            h0, w0 = meta["shape"]
            self.images.append({"id": img_id, "width": w0, "height": h0, "file_name": meta["file"]})
            gt = meta["gt"]
            gt_xyxy = np.c_[
                (gt[:, 1] - gt[:, 3] / 2) * w0,
                (gt[:, 2] - gt[:, 4] / 2) * h0,
                (gt[:, 1] + gt[:, 3] / 2) * w0,
                (gt[:, 2] + gt[:, 4] / 2) * h0,
            ]
            for (cls, *_), (x1, y1, x2, y2) in zip(gt, gt_xyxy):
                self.annotations.append(
                    {
                        "id": len(self.annotations) + 1,
                        "image_id": img_id,
                        "category_id": int(cls),
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                        "area": float((x2 - x1) * (y2 - y1)),
                        "iscrowd": 0,
                    }
                )
            boxes, scores, classes = det["boxes"], det["scores"], det["classes"]
            for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist()):
                self.dets.append(
                    {"image_id": img_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
                )
            self._confusion(gt[:, 0].astype(int), gt_xyxy, boxes, scores, classes)

    def _confusion(self, gt_cls, gt_xyxy, boxes, scores, classes) -> None:
        bg = len(self.names)
        keep = scores >= self.conf_matrix
        boxes, classes = boxes[keep], classes[keep].astype(int)
        matched_gt, matched_det = set(), set()
        if len(gt_cls) and len(boxes):
            iou = box_iou(
                torch.as_tensor(gt_xyxy, dtype=torch.float32), torch.as_tensor(boxes, dtype=torch.float32)
            ).numpy()
            pairs = np.argwhere(iou > self.iou_matrix)
            order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]]) if len(pairs) else []
            for gi, di in pairs[order] if len(pairs) else []:
                if gi in matched_gt or di in matched_det:
                    continue
                matched_gt.add(gi)
                matched_det.add(di)
                self.confusion[gt_cls[gi], classes[di]] += 1
        for gi, c in enumerate(gt_cls):
            if gi not in matched_gt:
                self.confusion[c, bg] += 1  # missed
        for di, c in enumerate(classes):
            if di not in matched_det:
                self.confusion[bg, c] += 1  # false positive on background

    def coco_gt(self) -> dict:
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i, "name": n} for i, n in enumerate(self.names)],
        }

    def compute(self) -> dict[str, float]:
        self.ev = coco_eval(self.coco_gt(), self.dets)
        prec = self.ev.eval["precision"]  # T, R, K, A, M
        p50 = prec[0, :, :, 0, -1]  # IoU 0.5, all areas, 100 detections: (R, K)
        recall_pts = np.linspace(0, 1, prec.shape[1])
        valid = (p50 > -1).any(0)
        p, r = 0.0, 0.0
        if valid.any():
            curve = np.where(p50[:, valid] > -1, p50[:, valid], 0).mean(1)  # mean precision per recall point
            f1 = 2 * curve * recall_pts / (curve + recall_pts + 1e-9)
            best = int(np.argmax(f1))
            p, r = float(curve[best]), float(recall_pts[best])
        return {"precision": p, "recall": r, "mAP50": float(self.ev.stats[1]), "mAP50-95": float(self.ev.stats[0])}

    def per_class_ap(self) -> dict[str, tuple[float, float, int]]:
        """{name: (AP50-95, AP50, instances)}."""
        prec = self.ev.eval["precision"]
        counts = np.bincount([a["category_id"] for a in self.annotations], minlength=len(self.names))
        out = {}
        for k, name in enumerate(self.names):
            pk = prec[:, :, k, 0, -1]
            ap = float(pk[pk > -1].mean()) if (pk > -1).any() else float("nan")
            p50 = prec[0, :, k, 0, -1]
            ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
            out[name] = (ap, ap50, int(counts[k]))
        return out

    def table(self) -> str:
        if self.ev is None:
            self.compute()
        stats = self.ev.stats
        width = max(8, *(len(n) for n in self.names))
        lines = [
            f"{'class':>{width}}  {'images':>7}  {'boxes':>7}  {'mAP50':>7}  {'mAP50-95':>8}",
            f"{'all':>{width}}  {len(self.images):>7}  {len(self.annotations):>7}  {stats[1]:>7.4f}  {stats[0]:>8.4f}",
        ]
        for name, (ap, ap50, n) in self.per_class_ap().items():
            lines.append(f"{name:>{width}}  {'':>7}  {n:>7}  {ap50:>7.4f}  {ap:>8.4f}")
        return "\n".join(lines)

    def plot(self, save_dir: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if self.ev is None:
            self.compute()
        paths = []
        prec = self.ev.eval["precision"][0, :, :, 0, -1]
        recall = np.linspace(0, 1, prec.shape[0])
        fig, ax = plt.subplots(figsize=(6, 5))
        for k, name in enumerate(self.names):
            pk = prec[:, k]
            if (pk > -1).any():
                ax.plot(recall, np.clip(pk, 0, 1), lw=1, label=f"{name} {pk[pk > -1].mean():.3f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curve at IoU 0.5")
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(save_dir / "pr_curve.png", dpi=100)
        plt.close(fig)
        paths.append(save_dir / "pr_curve.png")
        labels = [*self.names, "background"]
        n = len(labels)
        cm = self.confusion / np.maximum(self.confusion.sum(0, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(min(4 + 0.45 * n, 16), min(3.5 + 0.45 * n, 15)))
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        ax.set(
            xlabel="predicted",
            ylabel="true",
            title=f"confusion matrix (conf ≥ {self.conf_matrix}, IoU > {self.iou_matrix})",
        )
        if n <= 30:
            ax.set_xticks(range(n), labels, rotation=90)
            ax.set_yticks(range(n), labels)
            for i in range(n):
                for j in range(n):
                    if self.confusion[i, j]:
                        ax.text(j, i, str(self.confusion[i, j]), ha="center", va="center", fontsize=7)
        fig.tight_layout()
        fig.savefig(save_dir / "confusion_matrix.png", dpi=100)
        plt.close(fig)
        paths.append(save_dir / "confusion_matrix.png")
        (save_dir / "predictions_coco.json").write_text(json.dumps(self.dets))
        (save_dir / "ground_truth_coco.json").write_text(json.dumps(self.coco_gt()))
        return paths

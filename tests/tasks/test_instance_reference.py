"""Scoring the COCO files ``instance val save_json=True`` writes with pycocotools alone, as a user would."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path


def score_files(run: Path, iou_type: str) -> float:
    """mAP50-95 of ``predictions_coco.json`` against ``ground_truth_coco.json`` in ``run`` (pycocotools only)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(run / "ground_truth_coco.json"))
        results = json.loads((run / "predictions_coco.json").read_text())
        if iou_type == "segm":  # loadRes takes a result's box over its mask when it has both
            results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])

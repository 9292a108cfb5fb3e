#!/usr/bin/env python
"""Benchmark: what starting from pretrained weights buys, per task, at equal epochs (and optionally equal time).

    python tools/bench_transfer.py [--model yolo-n] [--big 960] [--small 64] [--val 64] [--size 128] [--imgsz 128]
                                   [--epochs 10] [--pretrain-epochs 10] [--ssl dino] [--tasks detect,segment,depth]
                                   [--timm mobilenetv3_small_100] [--equal-time] [--out runs/bench_transfer]

1. Builds two shapes datasets: a larger labelled one (``--big`` scenes) to pretrain on and a small one
   (``--small`` scenes, the few-hundred-labels case) to fine-tune on.
2. Pretrains ``--model``'s backbone as a classifier on the big set's crops (``classify model=yolo-n``), and without
   labels on the same images (``visionkit pretrain method=--ssl``; ``--ssl none`` skips it).
3. Trains every task in ``--tasks`` on the small set from scratch, from the classifier (``weights=``), from the
   self-supervised backbone, and from the classifier with a frozen backbone, all at ``--epochs``. With
   ``--equal-time`` the scratch run is repeated for as many epochs as the transferred run's pretraining plus
   fine-tuning took.
4. With ``--timm NAME``: a timm encoder in the detector (``backbone=timm/NAME``) and in the U-Net
   (``model=timm/NAME``) from scratch, against the built-in presets at equal epochs.

Prints a table (metric: detect mAP50-95, segment mIoU, depth delta1; seconds; seconds per training step) and writes
it to OUT/bench_transfer.json. Targets (docs/transfer.md): transferred ≥ 1.5× scratch on detection at 10 epochs
and better on every task; self-supervised beats scratch on detection; frozen steps ≥ 1.5× faster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METRIC = {"detect": "mAP50-95", "segment": "mIoU", "depth": "delta1", "classify": "top1"}
# the preset each task's timm comparison runs against (same head)
BUILTIN = {"detect": "yolo-n", "segment": "unet-n"}


def _train(model: str, task: str, data: Path, out: Path, name: str, **kw) -> dict:
    from visionkit import Model

    m = Model(model, task=task)
    steps = [0]
    m.add_callback("on_batch_end", lambda t: steps.__setitem__(0, steps[0] + 1))
    t0 = time.perf_counter()
    metrics = m.train(data=str(data), project=str(out), name=name, exist_ok=True, verbose=False, plots=False, **kw)
    wall = time.perf_counter() - t0
    step_s = m.trainer.timer.seconds.get("step", float("nan"))  # forward + backward + update, loader waits left out
    return {
        "metric": float(metrics.get(METRIC[task], float("nan"))),
        "seconds": wall,
        "s_per_step": step_s / max(steps[0], 1),
        "best": str(m.ckpt_path),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolo-n")
    p.add_argument("--big", type=int, default=960)
    p.add_argument("--small", type=int, default=64)
    p.add_argument("--val", type=int, default=64)
    p.add_argument("--size", type=int, default=128, help="scene size in pixels")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: automatic, as train)")
    p.add_argument("--ssl", default="dino", choices=("simclr", "byol", "dino", "none"))
    p.add_argument("--tasks", default="detect,segment,depth")
    p.add_argument("--timm", default="", help="a timm network to compare in the detector and the U-Net")
    p.add_argument("--equal-time", action="store_true")
    p.add_argument("--out", default=str(REPO / "runs" / "bench_transfer"))
    a = p.parse_args()

    from visionkit.data.synthetic import generate_shapes

    out = Path(a.out)
    big = generate_shapes(out / "data_big", n_train=a.big, n_val=a.val, size=a.size, seed=0, verbose=False)
    small = generate_shapes(out / "data_small", n_train=a.small, n_val=a.val, size=a.size, seed=1, verbose=False)
    common = {"imgsz": a.imgsz, "batch": a.batch, "workers": a.workers}
    results: dict[str, dict] = {"settings": vars(a)}

    t0 = time.perf_counter()
    cls = _train(a.model, "classify", big / "data.yaml", out / "runs", "pretrain_classify",
                 epochs=a.pretrain_epochs, **common)  # fmt: skip
    cls["seconds"] = time.perf_counter() - t0
    results["pretrain_classify"] = cls
    print(f"classify pretraining on {a.big} scenes: top1 {cls['metric']:.3f} in {cls['seconds']:.0f}s")
    ssl = None
    if a.ssl != "none":
        from visionkit.pretrain import pretrain

        t0 = time.perf_counter()
        ssl = pretrain(data=str(big / "images" / "train"), model=a.model, method=a.ssl, epochs=a.pretrain_epochs,
                       project=str(out / "runs"), name=f"pretrain_{a.ssl}", exist_ok=True, verbose=False,
                       **common)  # fmt: skip
        results["pretrain_ssl"] = {"method": a.ssl, "seconds": time.perf_counter() - t0, "best": str(ssl)}
        print(f"{a.ssl} pretraining on the same images, no labels: {results['pretrain_ssl']['seconds']:.0f}s")

    rows = []
    for task in [t for t in a.tasks.split(",") if t]:
        extra = {"close_mosaic": 0} if task == "detect" else {}
        runs = {"scratch": {}, "classify": {"weights": cls["best"]}}
        if ssl is not None:
            runs[a.ssl] = {"weights": str(ssl)}
        runs["classify+freeze"] = {"weights": cls["best"], "freeze": "backbone"}
        for label, kw in runs.items():
            r = _train(a.model, task, small / "data.yaml", out / "runs", f"{task}_{label}", epochs=a.epochs,
                       **common, **extra, **kw)  # fmt: skip
            results[f"{task}/{label}"] = r
            rows.append((task, label, a.epochs, r))
        if a.equal_time:
            budget = results[f"{task}/classify"]["seconds"] + cls["seconds"]
            per_epoch = results[f"{task}/scratch"]["seconds"] / a.epochs
            n = max(a.epochs, round(budget / per_epoch))
            r = _train(a.model, task, small / "data.yaml", out / "runs", f"{task}_scratch_equal_time", epochs=n,
                       **common, **extra)  # fmt: skip
            results[f"{task}/scratch_equal_time"] = r
            rows.append((task, "scratch (equal time)", n, r))
    if a.timm:
        for task, builtin in BUILTIN.items():
            extra = {"close_mosaic": 0} if task == "detect" else {}
            timm_kw = {"backbone": f"timm/{a.timm}"} if task == "detect" else {}
            timm_model = builtin if task == "detect" else f"timm/{a.timm}"
            for label, model, kw in ((builtin, builtin, {}), (f"timm/{a.timm}", timm_model, timm_kw)):
                r = _train(model, task, small / "data.yaml", out / "runs", f"{task}_{label.replace('/', '_')}",
                           epochs=a.epochs, **common, **extra, **kw)  # fmt: skip
                results[f"{task}/{label}"] = r
                rows.append((task, label, a.epochs, r))

    print(f"\n{'task':<8} {'start':<22} {'epochs':>6} {'metric':>8} {'seconds':>8} {'s/step':>7}")
    for task, label, epochs, r in rows:
        print(f"{task:<8} {label:<22} {epochs:>6} {r['metric']:>8.4f} {r['seconds']:>8.1f} {r['s_per_step']:>7.3f}")
    for task in a.tasks.split(","):
        s, c = results.get(f"{task}/scratch"), results.get(f"{task}/classify")
        f = results.get(f"{task}/classify+freeze")
        if s and c:
            ratio = c["metric"] / s["metric"] if s["metric"] > 0 else float("inf")
            speed = s["s_per_step"] / f["s_per_step"] if f and f["s_per_step"] > 0 else float("nan")
            print(f"{task}: transferred/scratch {METRIC[task]} ×{ratio:.2f}; frozen step speed-up ×{speed:.2f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_transfer.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {out / 'bench_transfer.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

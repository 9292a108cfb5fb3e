#!/usr/bin/env python
"""Benchmark: visionkit unet-n against Ultralytics' semantic task (yolo26n-sem.yaml) and segmentation_models_pytorch's
Unet (ResNet-18 encoder, no weights), all trained from scratch side by side.

    python tools/bench_segment.py [--data datasets/shapes/data.yaml] [--imgsz 160] [--epochs 10] [--batch 16]
                                  [--equal-time] [--skip smp]

Same dataset (a visionkit / Ultralytics layout: images/ + masks/, value = class id, 255 = ignore), epochs, batch,
image size, threads and workers. Ultralytics (AGPL-3.0) and segmentation_models_pytorch run in their own
virtualenv (.venv-ultralytics, installed by this script), never as visionkit dependencies. smp has no trainer: it
gets a minimal loop on visionkit's data pipeline and loss, so that comparison is about the network.

Every model's predicted class maps on the val images are scored by one implementation (visionkit's confusion
matrix at the original resolution, mIoU over the classes present in ground truth or prediction); each framework's
own validator figure is printed too. With --equal-time, visionkit trains again for as many epochs as fit in
Ultralytics' wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from bench_detect import ensure_ultralytics  # noqa: E402

UL_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np, cv2
from ultralytics import YOLO
a = json.loads(sys.argv[1])
model = YOLO("yolo26n-sem.yaml")
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], workers=a["workers"],
            device="cpu", plots=False, seed=0, amp=False, pretrained=False, project=a["project"], name="train",
            exist_ok=True, verbose=False, val=True, close_mosaic=a["close_mosaic"])
wall = time.perf_counter() - t0
best = YOLO(a["project"] + "/train/weights/best.pt")
params = sum(p.numel() for p in best.model.parameters())
m = best.val(data=a["data"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", plots=False, project=a["project"],
             name="val", exist_ok=True, verbose=False)
out = Path(a["project"]) / "maps"
out.mkdir(exist_ok=True)
for r in best.predict(a["val_images"], imgsz=a["imgsz"], device="cpu", verbose=False, stream=True):
    cls = r.semantic_mask.data.cpu().numpy().astype(np.uint8)
    h, w = r.orig_shape
    if cls.shape != (h, w):
        cls = cv2.resize(cls, (w, h), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(out / (Path(r.path).stem + ".png")), cls)
print("BENCH_RESULT " + json.dumps({"params": params, "wall": wall, "miou_own": float(m.miou), "maps": str(out)}))
"""

SMP_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np, cv2, torch
import segmentation_models_pytorch as smp
from visionkit.cfg import resolve
from visionkit.data.format import load_data_yaml, mask_names, split_images
from visionkit.engine.setup import make_loader
from visionkit.data.dense import collate
from visionkit.tasks.segment.dataset import SegmentationDataset
from visionkit.tasks.segment.loss import segmentation_loss
from visionkit.tasks.segment.task import SegmentTask
from visionkit.tasks.shared import joint_augment_args
a = json.loads(sys.argv[1])
torch.manual_seed(0)
spec = load_data_yaml(a["data"])
names = mask_names(spec)
args = joint_augment_args(resolve({"imgsz": a["imgsz"], "close_mosaic": a["close_mosaic"]}, SegmentTask.keys))
train = SegmentationDataset(split_images(spec, "train"), len(names), a["imgsz"], True, args, verbose=False)
loader = make_loader(train, a["batch"], a["workers"], True, torch.device("cpu"), collate, torch.Generator())
net = smp.Unet("resnet18", encoder_weights=None, classes=len(names))
params = sum(p.numel() for p in net.parameters())
opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4)
steps = a["epochs"] * len(loader)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.1)
t0 = time.perf_counter()
for epoch in range(a["epochs"]):
    if epoch >= a["epochs"] - a["close_mosaic"]:
        train.close_mosaic()
    net.train()
    for imgs, masks, _ in loader:
        loss, _ = segmentation_loss(net(imgs.float() / 255), masks, float(args["dice"]))
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
wall = time.perf_counter() - t0
net.eval()
out = Path(a["project"]) / "maps"
out.mkdir(parents=True, exist_ok=True)
task = SegmentTask()
with torch.no_grad():
    for f in a["val_images"]:
        x, ctx = task.load_inputs([f], a["imgsz"], 3, None, None, rect=False)
        cv2.imwrite(str(out / (Path(f).stem + ".png")), task.class_maps(net(x), ctx)[0])
print("BENCH_RESULT " + json.dumps({"params": params, "wall": wall, "miou_own": None, "maps": str(out)}))
"""


def score(maps: Path, val_images: list[Path], names: list[str]) -> dict[str, float]:
    """mIoU, mDice and pixel accuracy of saved class-map PNGs against the dataset's masks (original size)."""
    from visionkit.data.format import read_mask, sidecar_path
    from visionkit.tasks.segment.metrics import confusion_matrix, scores

    total = np.zeros((len(names), len(names)), np.int64)
    for img in val_images:
        gt = read_mask(sidecar_path(img, "masks"))
        pred = read_mask(maps / f"{img.stem}.png")
        total += confusion_matrix(gt, np.minimum(pred, len(names) - 1), len(names))
    s = scores(total)
    return {"mIoU": s["mIoU"], "mDice": s["mDice"], "pixel_acc": s["pixel_acc"]}


def train_visionkit(data: str, a, epochs: int, project: str, val_images: list[Path]) -> dict:
    import cv2

    from visionkit import Model

    model = Model("unet-n")
    t0 = time.perf_counter()
    model.train(
        data=data,
        epochs=epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        device="cpu",
        project=project,
        name="train",
        exist_ok=True,
        close_mosaic=a.close_mosaic,
        plots=False,
        verbose=False,
        seed=0,
        patience=0,
    )
    wall = time.perf_counter() - t0
    own = model.val(
        data=data,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        device="cpu",
        verbose=False,
        plots=False,
        project=project,
    )
    maps = Path(project) / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for r in model.predict(
        [str(p) for p in val_images], imgsz=a.imgsz, device="cpu", verbose=False, project=project, rect=False
    ):
        cv2.imwrite(str(maps / f"{Path(r['image']).stem}.png"), r["_mask"])
    params = sum(p.numel() for p in model.net.parameters())
    return {"params": params, "wall": wall, "miou_own": own["mIoU"], "maps": str(maps)}


def run_in_venv(py: Path, script: str, payload: dict, env: dict) -> dict:
    proc = subprocess.run([str(py), "-c", script, json.dumps(payload)], capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"peer run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line.split(" ", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data.yaml (default: shapes, 480 train / 120 val at 320 px)")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--equal-time", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ultralytics", "smp"])
    a = ap.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(a.threads), YOLO_OFFLINE="1")
    import torch

    torch.set_num_threads(a.threads)
    from visionkit.data.format import load_data_yaml, mask_names, split_images
    from visionkit.data.synthetic import ensure_shapes

    data = a.data or str(ensure_shapes(REPO / "datasets" / "shapes") / "data.yaml")
    spec = load_data_yaml(data)
    names = mask_names(spec)
    val_images = split_images(spec, "val")
    work = Path(tempfile.mkdtemp(prefix="bench_segment_"))
    # Ultralytics' semantic layout: names are the mask values, masks found through masks_dir
    ul_data = work / "data_ul.yaml"
    ul_data.write_text(
        yaml.safe_dump(
            {
                "path": str(spec["root"]),
                "train": spec["train"],
                "val": spec["val"],
                "names": dict(enumerate(names)),
                "masks_dir": "masks",
            }
        )
    )
    payload = {
        "data": str(ul_data),
        "epochs": a.epochs,
        "imgsz": a.imgsz,
        "batch": a.batch,
        "workers": a.workers,
        "close_mosaic": a.close_mosaic,
        "val_images": [str(p) for p in val_images],
    }
    results = {}
    print(
        f"data {data}: {len(split_images(spec, 'train'))} train / {len(val_images)} val images, {len(names)} "
        f"mask classes; imgsz {a.imgsz}, {a.epochs} epochs, batch {a.batch}, {a.threads} threads, "
        f"{a.workers} workers"
    )
    results["visionkit unet-n"] = train_visionkit(data, a, a.epochs, str(work / "visionkit"), val_images)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if "ultralytics" not in a.skip or "smp" not in a.skip:
        py = ensure_ultralytics(REPO / ".venv-ultralytics", extra=("segmentation-models-pytorch",))
        if "ultralytics" not in a.skip:
            results["ultralytics yolo26n-sem"] = run_in_venv(
                py, UL_SCRIPT, {**payload, "project": str(work / "ultralytics")}, env
            )
        if "smp" not in a.skip:
            results["smp Unet resnet18"] = run_in_venv(
                py, SMP_SCRIPT, {**payload, "data": data, "project": str(work / "smp")}, env
            )
    n_train = len(split_images(spec, "train"))
    print(
        f"\n{'model':<26} {'params':>10} {'train img/s':>12} {'wall s':>8} {'mIoU':>7} {'mDice':>7} "
        f"{'pix acc':>8} {'own mIoU':>9}"
    )
    rows = {}
    for name, r in results.items():
        s = score(Path(r["maps"]), val_images, names)
        rows[name] = {**r, **s, "ips": n_train * a.epochs / r["wall"]}
        own = f"{r['miou_own']:.4f}" if r["miou_own"] is not None else "-"
        print(
            f"{name:<26} {r['params']:>10,} {rows[name]['ips']:>12.1f} {r['wall']:>8.1f} {s['mIoU']:>7.4f} "
            f"{s['mDice']:>7.4f} {s['pixel_acc']:>8.4f} {own:>9}"
        )
    ours = rows["visionkit unet-n"]
    for name, r in rows.items():
        if r is not ours:
            print(
                f"visionkit / {name}: images/s {ours['ips'] / r['ips']:.2f}x, mIoU at equal epochs "
                f"{ours['mIoU'] / max(r['mIoU'], 1e-9):.2f}x"
            )
    ul = rows.get("ultralytics yolo26n-sem")
    if a.equal_time and ul is not None:
        epochs = max(1, int(ul["wall"] / (ours["wall"] / a.epochs)))
        r = train_visionkit(data, a, epochs, str(work / "visionkit_equal"), val_images)
        s = score(Path(r["maps"]), val_images, names)
        print(
            f"equal wall-clock: visionkit {epochs} epochs in {r['wall']:.0f}s → mIoU {s['mIoU']:.4f} vs "
            f"Ultralytics {a.epochs} epochs in {ul['wall']:.0f}s → {ul['mIoU']:.4f} "
            f"({s['mIoU'] / max(ul['mIoU'], 1e-9):.2f}x)"
        )
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()

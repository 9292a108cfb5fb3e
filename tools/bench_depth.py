#!/usr/bin/env python
"""Benchmark: visionkit depth-n against Ultralytics' depth task (yolo26n-depth.yaml), both trained from scratch side
by side on scenes with real geometry (the generated ``rooms`` dataset: ray-cast rooms and boxes, exact depth).

    python tools/bench_depth.py [--data datasets/rooms/data.yaml] [--imgsz 192] [--epochs 10] [--batch 16]
                                [--equal-time]

Same dataset, epochs, batch, image size, threads and workers. Ultralytics (AGPL-3.0) runs in its own virtualenv
(.venv-ultralytics, installed by this script), never as a visionkit dependency. Both models' predicted maps on the
val images are scored by one implementation after the same alignment: each image's prediction, as inverse depth,
is fitted to the ground truth's inverse depth by least squares (scale and shift), then δ1 (higher is better) and
AbsRel (lower is better) are computed at the original resolution. With --equal-time, visionkit trains again for
as many epochs as fit in Ultralytics' wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from bench_detect import ensure_ultralytics  # noqa: E402
from bench_segment import run_in_venv  # noqa: E402

UL_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np, cv2
from ultralytics import YOLO
a = json.loads(sys.argv[1])
model = YOLO("yolo26n-depth.yaml")
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], workers=a["workers"],
            device="cpu", plots=False, seed=0, amp=False, pretrained=False, project=a["project"], name="train",
            exist_ok=True, verbose=False, val=True)
wall = time.perf_counter() - t0
best = YOLO(a["project"] + "/train/weights/best.pt")
params = sum(p.numel() for p in best.model.parameters())
m = best.val(data=a["data"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", plots=False, project=a["project"],
             name="val", exist_ok=True, verbose=False)
out = Path(a["project"]) / "maps"
out.mkdir(exist_ok=True)
for r in best.predict(a["val_images"], imgsz=a["imgsz"], device="cpu", verbose=False, stream=True):
    d = r.depth.data.cpu().numpy().astype(np.float32)
    h, w = r.orig_shape
    if d.shape != (h, w):
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    np.save(out / (Path(r.path).stem + ".npy"), 1.0 / np.clip(d, 1e-6, None))  # as inverse depth
own = {k: float(v) for k, v in m.results_dict.items()}
print("BENCH_RESULT " + json.dumps({"params": params, "wall": wall, "own": own, "maps": str(out)}))
"""


def score(maps: Path, val_images: list[Path], depth_scale: float) -> dict[str, float]:
    """δ1 and AbsRel (and RMSE) of saved inverse-depth maps, each image aligned by least squares first."""
    from visionkit.data.format import depth_path, read_depth
    from visionkit.tasks.depth.metrics import score_image

    per_image = []
    for img in val_images:
        gt = read_depth(depth_path(img), depth_scale)
        per_image.append(score_image(np.load(maps / f"{img.stem}.npy"), gt, "inverse_depth", None))
    return {k: float(np.mean([m[k] for m in per_image])) for k in ("delta1", "abs_rel", "rmse")}


def train_visionkit(data: str, a, epochs: int, project: str, val_images: list[Path]) -> dict:
    from visionkit import Model

    model = Model("depth-n")
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
        np.save(maps / f"{Path(r['image']).stem}.npy", r["_depth"])  # relative model: inverse depth already
    params = sum(p.numel() for p in model.net.parameters())
    return {
        "params": params,
        "wall": wall,
        "own": {"delta1": own["delta1"], "abs_rel": own["abs_rel"]},
        "maps": str(maps),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data.yaml with depth/ maps (default: rooms, 400 train / 100 val)")
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--equal-time", action="store_true")
    a = ap.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(a.threads), YOLO_OFFLINE="1")
    import torch

    torch.set_num_threads(a.threads)
    from visionkit.data.format import load_data_yaml, split_images
    from visionkit.data.rooms import ensure_rooms

    data = a.data or str(ensure_rooms(REPO / "datasets" / "rooms") / "data.yaml")
    spec = load_data_yaml(data)
    val_images = split_images(spec, "val")
    n_train = len(split_images(spec, "train"))
    work = Path(tempfile.mkdtemp(prefix="bench_depth_"))
    ul_data = work / "data_ul.yaml"
    ul_data.write_text(
        yaml.safe_dump(
            {
                "path": str(spec["root"]),
                "train": spec["train"],
                "val": spec["val"],
                "names": {0: "depth"},
                "depth_scale": spec["depth_scale"],
            }
        )
    )
    print(
        f"data {data}: {n_train} train / {len(val_images)} val images; imgsz {a.imgsz}, {a.epochs} epochs, "
        f"batch {a.batch}, {a.threads} threads, {a.workers} workers"
    )
    results = {"visionkit depth-n": train_visionkit(data, a, a.epochs, str(work / "visionkit"), val_images)}
    py = ensure_ultralytics(REPO / ".venv-ultralytics")
    payload = {
        "data": str(ul_data),
        "epochs": a.epochs,
        "imgsz": a.imgsz,
        "batch": a.batch,
        "workers": a.workers,
        "val_images": [str(p) for p in val_images],
        "project": str(work / "ultralytics"),
    }
    results["ultralytics yolo26n-depth"] = run_in_venv(py, UL_SCRIPT, payload, {**os.environ})
    print(
        f"\n{'model':<28} {'params':>10} {'train img/s':>12} {'wall s':>8} {'delta1':>8} {'abs_rel':>8} "
        f"{'rmse':>8}   (aligned, original resolution)"
    )
    rows = {}
    for name, r in results.items():
        s = score(Path(r["maps"]), val_images, spec["depth_scale"])
        rows[name] = {**r, **s, "ips": n_train * a.epochs / r["wall"]}
        print(
            f"{name:<28} {r['params']:>10,} {rows[name]['ips']:>12.1f} {r['wall']:>8.1f} {s['delta1']:>8.4f} "
            f"{s['abs_rel']:>8.4f} {s['rmse']:>8.4f}   own validator: {json.dumps(r['own'])[:120]}"
        )
    ours, ul = rows["visionkit depth-n"], rows["ultralytics yolo26n-depth"]
    print(
        f"visionkit / ultralytics: images/s {ours['ips'] / ul['ips']:.2f}x, delta1 "
        f"{ours['delta1'] / ul['delta1']:.2f}x (higher is better), abs_rel "
        f"{ours['abs_rel'] / ul['abs_rel']:.2f}x (lower is better)"
    )
    if a.equal_time:
        epochs = max(1, int(ul["wall"] / (ours["wall"] / a.epochs)))
        r = train_visionkit(data, a, epochs, str(work / "visionkit_equal"), val_images)
        s = score(Path(r["maps"]), val_images, spec["depth_scale"])
        print(
            f"equal wall-clock: visionkit {epochs} epochs in {r['wall']:.0f}s → delta1 {s['delta1']:.4f}, abs_rel "
            f"{s['abs_rel']:.4f} vs Ultralytics {a.epochs} epochs in {ul['wall']:.0f}s → {ul['delta1']:.4f}, "
            f"{ul['abs_rel']:.4f}"
        )
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()

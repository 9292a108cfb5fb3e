#!/usr/bin/env python
"""Benchmark: visionkit yolo-n (or --model) against Ultralytics yolov8n.yaml (or --ul-model yolo26n.yaml), both
trained from scratch side by side.

    python tools/bench_detect.py [--data datasets/shapes/data.yaml] [--imgsz 320] [--epochs 10] [--batch 16]
                                 [--equal-time]

Same dataset, epochs, batch, image size, CPU threads and workers. Ultralytics (AGPL-3.0) is installed by this
script into its own virtualenv (.venv-ultralytics) and run as a separate process: it is never a dependency of
visionkit. Prints parameters, GFLOPs, training images/s, wall time, mAP50-95 and mAP50 from each framework's own
validator and from one pycocotools evaluation of both models' predictions, and the visionkit/Ultralytics ratios.
With --equal-time, visionkit trains again for as many epochs as fit in Ultralytics' wall time.
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

import yaml

REPO = Path(__file__).resolve().parents[1]
UL_SCRIPT = r"""
import json, sys, time
from ultralytics import YOLO
a = json.loads(sys.argv[1])
model = YOLO(a["model"])
from ultralytics.utils.torch_utils import get_flops
params = sum(p.numel() for p in model.model.parameters())
gflops = get_flops(model.model, a["imgsz"])
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], workers=a["workers"],
            device="cpu", plots=False, seed=0, amp=False, pretrained=False, project=a["project"], name="train",
            exist_ok=True, verbose=False, val=True, close_mosaic=a["close_mosaic"])
wall = time.perf_counter() - t0
best = YOLO(a["project"] + "/train/weights/best.pt")
params = sum(p.numel() for p in best.model.parameters())  # with the dataset's classes, like visionkit's
gflops = get_flops(best.model, a["imgsz"])
m = best.val(data=a["data"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", save_json=True, plots=False,
             project=a["project"], name="val", exist_ok=True, conf=0.001, iou=0.7, verbose=False)
print("BENCH_RESULT " + json.dumps({"params": params, "gflops": gflops, "wall": wall, "map": m.box.map,
                                    "map50": m.box.map50, "predictions": a["project"] + "/val/predictions.json"}))
"""


def ensure_ultralytics(venv: Path, extra: tuple[str, ...] = ()) -> Path:
    """The python of a virtualenv holding Ultralytics (and ``extra`` packages), installed on first use."""
    py = venv / "bin" / "python"
    modules = ", ".join(["ultralytics", *(p.replace("-", "_") for p in extra)])
    if py.is_file() and subprocess.run([str(py), "-c", f"import {modules}"], capture_output=True).returncode == 0:
        return py
    print(f"installing Ultralytics into {venv} (its own virtualenv; never a visionkit dependency) ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    import torch
    import torchvision

    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            f"torch=={torch.__version__.split('+')[0]}",
            f"torchvision=={torchvision.__version__.split('+')[0]}",
            "ultralytics",
            *extra,
        ],
        check=True,
    )
    return py


def run_ultralytics(py: Path, script: str, model: str, data: str, a, work: Path) -> dict:
    """Train ``model`` with Ultralytics in its own venv (``script`` prints ``BENCH_RESULT {json}``) on ``data`` with
    the benchmark's epochs, size, batch, workers, threads and close_mosaic; returns that JSON, or exits with the
    run's output when it fails."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads), "YOLO_VERBOSE": "False"}
    args = {
        "model": model,
        "data": data,
        "epochs": a.epochs,
        "imgsz": a.imgsz,
        "batch": a.batch,
        "workers": a.workers,
        "project": str(work / "ultralytics"),
        "close_mosaic": a.close_mosaic,
    }
    proc = subprocess.run([str(py), "-c", script, json.dumps(args)], env=env, capture_output=True, text=True, cwd=work)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"Ultralytics run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ul = json.loads(line.split(" ", 1)[1])
    print(f"Ultralytics done in {ul['wall']:.0f} s")
    return ul


def coco_map(gt: dict, dets: list[dict]) -> tuple[float, float]:
    from visionkit.tasks.detect.metrics import coco_eval

    ev = coco_eval(gt, dets)
    return float(ev.stats[0]), float(ev.stats[1])


def train_visionkit(data: str, a, epochs: int, project: str) -> dict:
    from visionkit import Model

    model = Model(a.model)
    t0 = time.perf_counter()
    model.train(
        data=data,
        epochs=epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        project=project,
        close_mosaic=a.close_mosaic,
        plots=False,
        verbose=False,
        seed=0,
        patience=0,
    )
    wall = time.perf_counter() - t0
    metrics = model.val(data=data, plots=True, verbose=False, project=project, batch=a.batch)
    info = model.info(imgsz=a.imgsz, verbose=False)
    return {
        "params": info["params"],
        "gflops": info["flops"] / 1e9,
        "wall": wall,
        "map": metrics["mAP50-95"],
        "map50": metrics["mAP50"],
        "val_dir": model.save_dir,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="YOLO data.yaml (default: the shapes dataset, generated)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--venv", default=str(REPO / ".venv-ultralytics"))
    ap.add_argument("--equal-time", action="store_true", help="also train visionkit for Ultralytics' wall time")
    ap.add_argument("--ul-model", default="yolov8n.yaml", help="the Ultralytics model trained (yolo26n.yaml: YOLO26n)")
    ap.add_argument("--model", default="yolo-n", help="the visionkit preset trained (yolo-n-e2e: NMS-free)")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from visionkit.data.format import load_data_yaml, split_images
    from visionkit.data.synthetic import ensure_shapes

    data = a.data or str(ensure_shapes(REPO / "datasets" / "shapes") / "data.yaml")
    spec = load_data_yaml(data)
    n_train = len(split_images(spec, "train"))
    work = Path(tempfile.mkdtemp(prefix="vk-bench-detect-"))
    # Ultralytics resolves a relative `path` against its own datasets folder: hand it an absolute one
    ul_yaml = work / "data_ultralytics.yaml"
    ul_yaml.write_text(
        yaml.safe_dump(
            {
                "path": str(spec["root"]),
                "train": spec["train"],
                "val": spec["val"],
                "names": {i: n for i, n in enumerate(spec["names"])},
            }
        )
    )
    py = ensure_ultralytics(Path(a.venv))
    print(
        f"data {data}: {n_train} train images; imgsz {a.imgsz}, epochs {a.epochs}, batch {a.batch}, "
        f"{a.threads} threads, {a.workers} workers; work dir {work}"
    )

    vk = train_visionkit(data, a, a.epochs, str(work / "visionkit"))
    print(f"visionkit done in {vk['wall']:.0f} s")
    ul = run_ultralytics(py, UL_SCRIPT, a.ul_model, str(ul_yaml), a, work)

    # one pycocotools evaluation of both models' predictions against the same ground truth
    gt = json.loads((vk["val_dir"] / "ground_truth_coco.json").read_text())

    def key(stem) -> str:  # Ultralytics turns numeric file stems into integers ("00480" → 480)
        return str(int(stem)) if str(stem).isdigit() else str(stem)

    stem_to_id = {key(Path(im["file_name"]).stem): im["id"] for im in gt["images"]}
    vk_dets = json.loads((vk["val_dir"] / "predictions_coco.json").read_text())
    # outside COCO itself, Ultralytics writes category_id = class index + 1
    ul_dets = [
        {**d, "image_id": stem_to_id[key(d["image_id"])], "category_id": d["category_id"] - 1}
        for d in json.loads(Path(ul["predictions"]).read_text())
        if key(d["image_id"]) in stem_to_id
    ]
    vk_coco, ul_coco = coco_map(gt, vk_dets), coco_map(gt, ul_dets)

    rows = [
        ("parameters", vk["params"], ul["params"], "{:,.0f}"),
        ("GFLOPs", vk["gflops"], ul["gflops"], "{:.2f}"),
        ("train images/s", a.epochs * n_train / vk["wall"], a.epochs * n_train / ul["wall"], "{:.1f}"),
        ("wall time (s)", vk["wall"], ul["wall"], "{:.0f}"),
        ("mAP50-95 (own validator)", vk["map"], ul["map"], "{:.4f}"),
        ("mAP50 (own validator)", vk["map50"], ul["map50"], "{:.4f}"),
        ("mAP50-95 (pycocotools, both)", vk_coco[0], ul_coco[0], "{:.4f}"),
        ("mAP50 (pycocotools, both)", vk_coco[1], ul_coco[1], "{:.4f}"),
    ]
    print(f"\n{'':<30} {'visionkit ' + a.model:>18} {'UL ' + Path(a.ul_model).stem:>18} {'ratio vk/UL':>12}")
    for name, v, u, fmt in rows:
        ratio = v / u if u else float("nan")
        print(f"{name:<30} {fmt.format(v):>18} {fmt.format(u):>18} {ratio:>12.3f}")
    if a.equal_time:
        epochs_eq = max(1, int(a.epochs * ul["wall"] / vk["wall"]))
        eq = train_visionkit(data, a, epochs_eq, str(work / "visionkit_equal_time"))
        print(
            f"\nequal wall-clock: visionkit {epochs_eq} epochs in {eq['wall']:.0f} s → mAP50-95 {eq['map']:.4f} vs "
            f"Ultralytics {ul['map']:.4f} in {ul['wall']:.0f} s: ratio {eq['map'] / max(ul['map'], 1e-9):.3f}"
        )


if __name__ == "__main__":
    main()

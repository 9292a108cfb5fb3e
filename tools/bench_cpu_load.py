#!/usr/bin/env python
"""Benchmark: CPU training speed on a busy machine. visionkit against Ultralytics, detect, segment and depth, each in
four conditions: idle with default settings; threads=1 workers=0 (per-core work); one busy process; two busy
processes (``python -c "while True: pass"`` in the background, killed afterwards).

    python tools/bench_cpu_load.py [--tasks detect,segment,depth] [--epochs 2] [--n-train 64] [--imgsz 64]
                                   [--conditions idle,t1w0,busy1,busy2] [--skip-ultralytics]

Every training runs in a fresh process, so each one sets up its threads (and OpenMP reads its environment) as a
user's would. Default settings mean none given: visionkit's automatic threads and workers, Ultralytics' own
(on CPU: no loader workers, one intra-op thread fewer than the cores). Prints training images/s (epochs × train
images / the train call's wall time, validation included for both) and visionkit / Ultralytics per condition,
and visionkit's busy / idle ratio. Ultralytics (AGPL-3.0) runs in its own virtualenv (.venv-ultralytics, installed
on first use by tools/bench_detect.py's ensure_ultralytics), never as a visionkit dependency. Data: the generated
shapes scenes (boxes, masks and depth maps), ``--n-train`` / ``--n-val`` of them at ``--imgsz`` pixels.
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
sys.path.insert(0, str(REPO / "tools"))

PRESETS = {"detect": "yolo-n", "segment": "unet-n", "depth": "depth-n"}
UL_MODELS = {"detect": "yolov8n.yaml", "segment": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml"}
CONDITIONS = {  # name: (threads, workers, busy processes); None = the framework's default
    "idle": (None, None, 0),
    "t1w0": (1, 0, 0),
    "busy1": (None, None, 1),
    "busy2": (None, None, 2),
}

VK_SCRIPT = r"""
import json, sys, time
a = json.loads(sys.argv[1])
from visionkit import Model  # before torch: visionkit sets OpenMP's environment first, as a user's script would
m = Model(a["preset"])
kw = {k: a[k] for k in ("threads", "workers") if a[k] is not None}
t0 = time.perf_counter()
m.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", project=a["project"],
        name="train", exist_ok=True, close_mosaic=0, plots=False, verbose=False, tensorboard=False, seed=0,
        patience=0, **kw)
wall = time.perf_counter() - t0
p = m.trainer.cpu_plan
print("BENCH_RESULT " + json.dumps({"wall": wall, "threads": p.threads, "workers": p.workers}))
"""

UL_SCRIPT = r"""
import json, sys, time
a = json.loads(sys.argv[1])
import torch
from ultralytics import YOLO
model = YOLO(a["model"])
kw = {"workers": a["workers"]} if a["workers"] is not None else {}
if a["threads"] is not None:
    torch.set_num_threads(a["threads"])  # after importing ultralytics, which sets its own
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", plots=False,
            seed=0, amp=False, pretrained=False, project=a["project"], name="train", exist_ok=True, verbose=False,
            val=True, close_mosaic=0, **kw)
wall = time.perf_counter() - t0
print("BENCH_RESULT " + json.dumps({"wall": wall, "threads": torch.get_num_threads()}))
"""


def ul_data_yaml(task: str, spec: dict, work: Path) -> Path:
    """The dataset as Ultralytics reads it for ``task`` (an absolute path; semantic masks; depth's scale)."""
    from visionkit.data.format import mask_names

    base = {"path": str(spec["root"]), "train": spec["train"], "val": spec["val"]}
    if task == "detect":
        body = {**base, "names": dict(enumerate(spec["names"]))}
    elif task == "segment":
        body = {**base, "names": dict(enumerate(mask_names(spec))), "masks_dir": "masks"}
    else:
        body = {**base, "names": {0: "depth"}, "depth_scale": spec["depth_scale"]}
    path = work / f"data_ul_{task}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def run(py: str | Path, script: str, payload: dict, busy: int, env: dict) -> dict:
    """One training in a fresh process beside ``busy`` spinning processes; its BENCH_RESULT."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)  # let the spinners get going
        proc = subprocess.run([str(py), "-c", script, json.dumps(payload)], capture_output=True, text=True, env=env)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line.split(" ", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="detect,segment,depth")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-ultralytics", action="store_true", help="visionkit only (no Ultralytics virtualenv)")
    ap.add_argument("--venv", default=str(REPO / ".venv-ultralytics"))
    a = ap.parse_args()
    tasks = [t for t in a.tasks.split(",") if t]
    conditions = [c for c in a.conditions.split(",") if c]
    for name in [*tasks, *conditions]:
        if name not in {**PRESETS, **CONDITIONS}:
            ap.error(
                f"unknown task or condition '{name}'; tasks: {', '.join(PRESETS)}; conditions: {', '.join(CONDITIONS)}"
            )

    from visionkit.data.format import load_data_yaml
    from visionkit.data.synthetic import generate_shapes
    from visionkit.engine.cpus import usable_cpus

    work = Path(tempfile.mkdtemp(prefix="vk-bench-cpu-load-"))
    root = generate_shapes(work / "shapes", n_train=a.n_train, n_val=a.n_val, size=a.imgsz, verbose=False)
    data = str(root / "data.yaml")
    spec = load_data_yaml(data)
    ul_py = None
    if not a.skip_ultralytics:
        from bench_detect import ensure_ultralytics

        ul_py = ensure_ultralytics(Path(a.venv))
    print(
        f"{usable_cpus().describe()}; shapes {a.n_train} train / {a.n_val} val at {a.imgsz} px, {a.epochs} epochs, "
        f"batch {a.batch}; work folder {work}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    common = {"epochs": a.epochs, "imgsz": a.imgsz, "batch": a.batch}
    rows = []
    for task in tasks:
        ul_data = ul_data_yaml(task, spec, work) if ul_py else None
        for cond in conditions:
            threads, workers, busy = CONDITIONS[cond]
            payload = {**common, "threads": threads, "workers": workers}
            vk = run(
                sys.executable,
                VK_SCRIPT,
                {**payload, "preset": PRESETS[task], "data": data, "project": str(work / "vk" / task / cond)},
                busy,
                env,
            )
            ul = (
                run(
                    ul_py,
                    UL_SCRIPT,
                    {
                        **payload,
                        "model": UL_MODELS[task],
                        "data": str(ul_data),
                        "project": str(work / "ul" / task / cond),
                    },
                    busy,
                    env,
                )
                if ul_py
                else None
            )
            row = {
                "task": task,
                "condition": cond,
                "vk_ips": a.epochs * a.n_train / vk["wall"],
                "vk_setup": f"{vk['threads']}t/{vk['workers']}w",
                "ul_ips": a.epochs * a.n_train / ul["wall"] if ul else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    idle = {r["task"]: r["vk_ips"] for r in rows if r["condition"] == "idle"}
    print(
        f"\n{'task':<8} {'condition':<10} {'visionkit img/s':>16} {'(threads/workers)':>18} {'Ultralytics img/s':>18} "
        f"{'vk / UL':>8} {'vk busy/idle':>13}"
    )
    for r in rows:
        ul = f"{r['ul_ips']:.2f}" if r["ul_ips"] else "-"
        ratio = f"{r['vk_ips'] / r['ul_ips']:.2f}" if r["ul_ips"] else "-"
        vs_idle = (
            f"{r['vk_ips'] / idle[r['task']]:.2f}" if r["condition"].startswith("busy") and r["task"] in idle else ""
        )
        print(
            f"{r['task']:<8} {r['condition']:<10} {r['vk_ips']:>16.2f} {r['vk_setup']:>18} {ul:>18} {ratio:>8} "
            f"{vs_idle:>13}"
        )


if __name__ == "__main__":
    main()

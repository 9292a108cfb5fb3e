#!/usr/bin/env python
"""Soak benchmark: a long run of a small detector must not leak memory, file descriptors or open files.

    python tools/bench_soak.py [--epochs 200] [--imgsz 64] [--workers 2] [--n-train 64] [--n-val 16]
                               [--warmup 10] [--out soak.json]

Trains yolo-n on generated shapes with persistent loader workers and validation every epoch. After each epoch
(the ``on_epoch_end`` callback) it samples, with psutil: the resident memory (RSS) of the main process and of
each loader worker (its child processes), the main process's file descriptors, open files and threads. After
``--warmup`` epochs (allocator pools, cuDNN/oneDNN caches and the workers' first batches settle), it fits a
straight line to each RSS (and USS: unshared memory) series and reports the slope in MB/epoch and the total
growth, plus the spread of the descriptor and open-file counts. A slope above ``--max-slope`` MB/epoch, or
descriptors that grow, is reported as a failure (exit code 1). A benchmark, not a test: 200 epochs take a while.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sample(proc) -> dict:
    """One reading of the main process and its children (the loader workers)."""
    import psutil

    mib = 1024 * 1024
    kids = []
    for child in proc.children(recursive=True):
        try:
            info = child.memory_full_info()
            kids.append((child.pid, info.rss / mib, info.uss / mib))
        except psutil.NoSuchProcess:  # a worker that ended between the listing and the reading
            pass
    main = proc.memory_full_info()
    return {
        "rss_main_mb": main.rss / mib,
        "uss_main_mb": main.uss / mib,
        # a forked worker's RSS counts the pages it shares with the main process; its USS is its own memory
        "rss_workers_mb": sum(r for _, r, _ in kids),
        "uss_workers_mb": sum(u for *_, u in kids),
        "workers": len(kids),
        "worker_pids": sorted(p for p, *_ in kids),
        "fds": proc.num_fds() if hasattr(proc, "num_fds") else None,
        "open_files": len(proc.open_files()),
        "threads": proc.num_threads(),
    }


def slope(values: list[float]) -> float:
    """Least-squares slope per epoch (0 for fewer than two points)."""
    if len(values) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(values), dtype=np.float64), np.asarray(values, np.float64), 1)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=10, help="epochs left out of the fit")
    ap.add_argument("--max-slope", type=float, default=0.5, help="MB/epoch above which RSS is said to grow")
    ap.add_argument("--close-mosaic", type=int, default=0, help="0: one set of workers throughout (see below)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the samples and the summary as JSON here")
    a = ap.parse_args()
    if a.epochs <= a.warmup + 2:
        ap.error(f"--epochs ({a.epochs}) must exceed --warmup ({a.warmup}) by at least 3 for a slope")

    import psutil

    from visionkit import Model
    from visionkit.data.synthetic import generate_shapes

    proc = psutil.Process(os.getpid())
    tmp = Path(tempfile.mkdtemp(prefix="vk-soak-"))
    data = generate_shapes(tmp / "shapes", n_train=a.n_train, n_val=a.n_val, size=max(48, a.imgsz), verbose=False)
    rows: list[dict] = []
    t0 = time.perf_counter()

    def on_epoch_end(trainer) -> None:
        row = {"epoch": trainer.epoch + 1, "s": time.perf_counter() - t0, **sample(proc)}
        rows.append(row)
        if row["epoch"] == 1 or row["epoch"] % max(1, a.epochs // 20) == 0:
            print(
                f"epoch {row['epoch']:4d}  main {row['rss_main_mb']:7.1f} MB (uss {row['uss_main_mb']:.1f})  workers "
                f"{row['rss_workers_mb']:7.1f} MB (uss {row['uss_workers_mb']:.1f}, {row['workers']})  "
                f"fds {row['fds']}  open files {row['open_files']}  threads {row['threads']}  "
                f"{row['s']:.0f} s",
                flush=True,
            )

    m = Model("yolo-n")
    m.add_callback("on_epoch_end", on_epoch_end)
    m.train(
        data=str(data / "data.yaml"),
        project=str(tmp / "runs"),
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        device=a.device,
        val=True,
        plots=False,
        patience=0,
        close_mosaic=a.close_mosaic,  # closing mosaic restarts the persistent workers: a step, not a leak
        verbose=False,
    )
    after = rows[a.warmup :]
    fd_counts = [r["fds"] for r in after if r["fds"] is not None]
    summary = {
        "conditions": {
            **vars(a),
            "torch_threads": __import__("torch").get_num_threads(),
            "cpus": os.cpu_count(),
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        "slope_main_mb_per_epoch": slope([r["rss_main_mb"] for r in after]),
        "slope_workers_mb_per_epoch": slope([r["rss_workers_mb"] for r in after]),
        "slope_main_uss_mb_per_epoch": slope([r["uss_main_mb"] for r in after]),
        "slope_workers_uss_mb_per_epoch": slope([r["uss_workers_mb"] for r in after]),
        "growth_main_mb": after[-1]["rss_main_mb"] - after[0]["rss_main_mb"],
        "growth_workers_mb": after[-1]["rss_workers_mb"] - after[0]["rss_workers_mb"],
        "rss_main_mb": [round(after[0]["rss_main_mb"], 1), round(after[-1]["rss_main_mb"], 1)],
        "rss_workers_mb": [round(after[0]["rss_workers_mb"], 1), round(after[-1]["rss_workers_mb"], 1)],
        "fds": [min(fd_counts), max(fd_counts)] if fd_counts else None,
        "open_files": [min(r["open_files"] for r in after), max(r["open_files"] for r in after)],
        "threads": [min(r["threads"] for r in after), max(r["threads"] for r in after)],
        "worker_sets": len({tuple(r["worker_pids"]) for r in after}),  # 1: the same persistent workers throughout
    }
    problems = []
    for key in ("slope_main_mb_per_epoch", "slope_workers_mb_per_epoch", "slope_workers_uss_mb_per_epoch"):
        if summary[key] > a.max_slope:
            problems.append(f"{key} {summary[key]:.3f} > {a.max_slope}")
    if fd_counts and fd_counts[-1] > fd_counts[0]:
        problems.append(f"file descriptors grew {fd_counts[0]} → {fd_counts[-1]}")
    if summary["open_files"][1] > summary["open_files"][0]:
        problems.append(f"open files grew to {summary['open_files'][1]}")
    summary["problems"] = problems
    print(json.dumps({k: v for k, v in summary.items() if k != "conditions"}, indent=1))
    print(f"conditions: {json.dumps(summary['conditions'])}")
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": summary, "epochs": rows}, indent=1))
    print("OK: no growth" if not problems else "GROWTH: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

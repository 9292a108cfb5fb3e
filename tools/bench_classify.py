#!/usr/bin/env python
"""Benchmark: mnist-tiny on full MNIST (the course target: >= 99.4% test accuracy, < 20k parameters, <= 15 epochs).

    python tools/bench_classify.py --data ../shared/data/mnist [--epochs 15] [--batch 128]

Prints parameters, epochs, seconds per epoch and test accuracy (the MNIST test set is the val split).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with the four MNIST IDX files (.gz or not)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr0", type=float, default=0.05)
    # MNIST lives in memory and is augmented a whole batch at a time: worker processes would only add IPC
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--project", default=None, help="runs folder (default: a temporary folder)")
    a = ap.parse_args()

    from visionkit import Model

    model = Model("mnist-tiny")
    params = sum(p.numel() for p in model.net.parameters())
    project = a.project or tempfile.mkdtemp(prefix="vk-bench-")
    epoch_times: list[float] = []
    model.add_callback("on_epoch_start", lambda t: epoch_times.append(time.perf_counter()))
    model.add_callback("on_epoch_end", lambda t: epoch_times.__setitem__(-1, time.perf_counter() - epoch_times[-1]))
    t0 = time.perf_counter()
    metrics = model.train(data="mnist", root=a.data, epochs=a.epochs, batch=a.batch, optimizer="sgd", lr0=a.lr0,
                          scheduler="onecycle", weight_decay=5e-4, workers=a.workers, device=a.device,
                          project=project, patience=0, verbose=False)
    wall = time.perf_counter() - t0
    acc = metrics["top1"]
    print(f"model        mnist-tiny\nparameters   {params:,} (target < 20,000: {'ok' if params < 20000 else 'MISSED'})")
    print(f"epochs       {a.epochs} (target <= 15)\nsec/epoch    {sum(epoch_times) / len(epoch_times):.1f} "
          f"(train + val, {a.workers} workers)\nwall         {wall:.0f} s")
    print(f"test top-1   {acc * 100:.2f}% (target >= 99.40%: {'ok' if acc >= 0.994 else 'MISSED'})")
    print(f"per-epoch    {model.save_dir / 'results.csv'}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Edge deployment figures for each task's smallest preset, batch 1 on this machine's CPU, side by side in one
run: median latency of the MediaPipe Task call, the LiteRT interpreter alone, onnxruntime and PyTorch eager, file
sizes for fp32 / fp16 / int8 .tflite, and the validation metric of the .pt, the float .tflite and the int8 one.

    make bench-edge          # or: .venv-edge/bin/python tools/bench_edge.py [--epochs 3] [--imgsz 128]

Each model is trained briefly on generated data (shapes; rooms for depth) so the metrics mean something; the
target in the issue: the MediaPipe detector call no slower than onnxruntime on the same model at equal mAP."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CASES = [
    ("classify", "mnist-tiny", "shapes"),
    ("segment", "unet-n", "shapes"),
    ("depth", "depth-n", "rooms"),
    ("detect", "yolo-n", "shapes"),
]


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def measure(task: str, preset: str, data: str, opt, work: Path) -> tuple:
    """Train, export (fp32, fp16, int8 and ONNX), validate and time one task's preset."""
    from ai_edge_litert import interpreter as tfl

    from visionkit import Model
    from visionkit.runtime.mediapipe_backend import MediaPipeModel

    imgsz = 32 if task == "classify" else opt.imgsz
    m = Model(preset, task=task)
    m.train(
        data=data,
        epochs=opt.epochs,
        imgsz=imgsz,
        batch=16,
        workers=0,
        verbose=False,
        plots=False,
        project=str(work / task),
        datasets_dir=str(work / "datasets"),
        **({"close_mosaic": 1} if task == "detect" else {}),
    )
    val_kw = {"verbose": False, "plots": False, "workers": 0, "project": str(work / "val")}
    export_kw = {"verbose": False, **({"nms": True, "conf": 0.001, "iou": 0.7} if task == "detect" else {})}
    files = {}
    for precision, kw in (("fp32", {}), ("fp16", {"half": True}), ("int8", {"int8": True})):
        path = m.export(format="mediapipe", **export_kw, **kw)
        files[precision] = path.rename(path.with_name(f"{path.stem}_{precision}.tflite"))
    onnx = m.export(format="onnx", verbose=False, **({"nms": True, "conf": 0.001} if task == "detect" else {}))
    pt_metrics = m.val(**val_kw)
    key = m.val_metrics.fitness_key
    metrics = {"pt": pt_metrics[key]}
    for precision in ("fp32", "int8"):
        fm = Model(str(files[precision]))
        metrics[precision] = fm.val(**val_kw)[key]
        fm.net.close()

    backend = MediaPipeModel(files["fp32"])
    h, w = backend.size
    rgb = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    runner = backend.runner
    mp_ms = median_ms(lambda: runner.run(rgb), opt.runs)
    interp = tfl.Interpreter(model_path=str(files["fp32"]), num_threads=2)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    x_tfl = rgb[None].astype(np.float32) / 255

    def run_tfl():
        interp.set_tensor(inp, x_tfl)
        interp.invoke()

    tfl_ms = median_ms(run_tfl, opt.runs)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    c = int(m.ckpt["in_channels"])
    x = torch.rand(1, c, h, w)
    ort_ms = median_ms(lambda: sess.run(None, {"images": x.numpy()}), opt.runs)
    net = m.net.eval()
    with torch.no_grad():
        pt_ms = median_ms(lambda: net(x), opt.runs)
    runner.close()
    sizes = {p: f.stat().st_size / 1e6 for p, f in files.items()}
    return task, preset, f"{h}x{w}", mp_ms, tfl_ms, ort_ms, pt_ms, sizes, key, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--tasks", default="classify,segment,depth,detect")
    opt = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="bench_edge_"))
    rows = [measure(task, preset, data, opt, work) for task, preset, data in CASES if task in opt.tasks.split(",")]
    print(f"\nbatch 1, {torch.get_num_threads()} threads, median of {opt.runs} runs (ms); sizes in MB")
    print(
        f"{'task':9} {'preset':11} {'input':8} {'MediaPipe':>9} {'LiteRT':>7} {'ORT':>7} {'torch':>7} "
        f"{'MP/ORT':>7} {'fp32':>6} {'fp16':>6} {'int8':>6}  metric: .pt / fp32 / int8 (change)"
    )
    for task, preset, size, mp_ms, tfl_ms, ort_ms, pt_ms, sizes, key, mt in rows:
        print(
            f"{task:9} {preset:11} {size:8} {mp_ms:9.2f} {tfl_ms:7.2f} {ort_ms:7.2f} {pt_ms:7.2f} "
            f"{mp_ms / ort_ms:7.2f} {sizes['fp32']:6.2f} {sizes['fp16']:6.2f} {sizes['int8']:6.2f}  "
            f"{key} {mt['pt']:.4f} / {mt['fp32']:.4f} / {mt['int8']:.4f} ({mt['int8'] - mt['fp32']:+.4f})"
        )


if __name__ == "__main__":
    main()

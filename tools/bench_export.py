#!/usr/bin/env python
"""Benchmark: median latency per image (batch 1, this CPU) of PyTorch eager vs onnxruntime for visionkit's
exported models, and Ultralytics' own ONNX export of its nano detector (yolov8n, or ``--ul-model yolo26n.yaml``:
its NMS-free export) at the same size run by the same onnxruntime.

    python tools/bench_export.py [--runs 50] [--sizes 320 640] [--models yolo-n yolo-n-e2e] [--ul-model yolo26n.yaml]

Models are untrained (latency does not depend on the weights). visionkit's and Ultralytics' files are timed in
alternation, call by call, so that drift in clock or load hits both alike. Ultralytics (AGPL-3.0) runs in its own
virtualenv (.venv-ultralytics, made by tools/bench_detect.py or here) and only produces the .onnx file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
UL_EXPORT = r"""
import sys
from ultralytics import YOLO
print("ONNX_PATH " + YOLO(sys.argv[2]).export(format="onnx", imgsz=int(sys.argv[1]), simplify=True, dynamic=False))
"""


def median_ms(fn, runs: int) -> float:
    return interleaved_ms([fn], runs)[0]


def interleaved_ms(fns, runs: int) -> list[float]:
    """Median ms of each function, calls alternated so that clock or load drift hits all of them alike."""
    for fn in fns:
        for _ in range(5):
            fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
    return [statistics.median(ts) for ts in times]


def session_runner(path: Path, imgsz: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # two sessions timed in alternation: a session's idle threads must not spin while the other one runs
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, imgsz, imgsz).astype(np.float32)
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def visionkit_export(preset: str, imgsz: int, num_classes: int, work: Path, simplify: bool):
    """(exported file, PyTorch eager callable) for a preset at imgsz (untrained: latency ignores the weights)."""
    from visionkit.api import Model
    from visionkit.cfg import resolve
    from visionkit.export.onnx import export_onnx
    from visionkit.models.checkpoint import library_versions

    m = Model(preset)
    m.config["num_classes"] = num_classes
    net = m.net.eval()
    ckpt = {
        "task": m.task_name,
        "names": [str(i) for i in range(num_classes)],
        "imgsz": imgsz,
        "in_channels": 3,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "model_config": m.config,
        "versions": library_versions(),
    }
    path = export_onnx(
        net,
        m.task,
        ckpt,
        resolve({"imgsz": imgsz, "verbose": False, "simplify": simplify}, m.task.keys),
        work / f"{preset}-{imgsz}.onnx",
    )
    x = torch.rand(1, 3, imgsz, imgsz)
    wrapper = m.task.export_wrapper(net, resolve({}, m.task.keys)).eval()

    def eager():
        with torch.no_grad():
            wrapper(x)

    return path, eager


def ultralytics_export(imgsz: int, venv: Path, work: Path, model: str = "yolov8n.yaml") -> Path:
    py = venv / "bin" / "python"
    if not py.is_file():
        sys.path.insert(0, str(REPO / "tools"))
        from bench_detect import ensure_ultralytics

        py = ensure_ultralytics(venv)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "onnx", "onnxslim", "onnxruntime"], check=True)
    out = subprocess.run(
        [str(py), "-c", UL_EXPORT, str(imgsz), model],
        capture_output=True,
        text=True,
        cwd=work,
        env={"YOLO_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("ONNX_PATH ")), None)
    if line is None:
        sys.exit(f"Ultralytics export failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    path = Path(line.split(" ", 1)[1].strip())
    path = path if path.is_absolute() else work / path
    target = work / f"ultralytics-{Path(model).stem}-{imgsz}.onnx"
    path.replace(target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--venv", default=str(REPO / ".venv-ultralytics"))
    ap.add_argument("--simplify", action="store_true", help="export with simplify=True (onnxslim), as Ultralytics does")
    ap.add_argument("--models", nargs="+", default=["yolo-n"], help="visionkit detector presets to time")
    ap.add_argument("--ul-model", default="yolov8n.yaml", help="Ultralytics model exported (yolo26n.yaml: end-to-end)")
    a = ap.parse_args()
    ul_name = Path(a.ul_model).stem
    work = Path(tempfile.mkdtemp(prefix="vk-bench-export-"))
    print(
        f"median ms per image, batch 1, {torch.get_num_threads()} threads, {a.runs} runs, visionkit simplify="
        f"{a.simplify} (Ultralytics: simplify=True)"
    )
    print(f"{'model':<28} {'PyTorch':>9} {'onnxruntime':>12} {'UL ' + ul_name + ' ORT':>15} {'vk ORT / UL':>12}")
    for size in a.sizes:
        ul_path = ultralytics_export(size, Path(a.venv), work, a.ul_model)
        for preset in a.models:
            path, eager = visionkit_export(preset, size, 80, work, a.simplify)
            eager_ms = median_ms(eager, a.runs)
            ort_ms, ul = interleaved_ms([session_runner(path, size), session_runner(ul_path, size)], a.runs)
            print(
                f"{preset + ' @' + str(size) + ' (80 classes)':<28} {eager_ms:>9.2f} {ort_ms:>12.2f} {ul:>15.2f} "
                f"{ort_ms / ul:>12.3f}"
            )
    path, eager = visionkit_export("mobilenet-v3-small-cls", 224, 1000, work, a.simplify)
    eager, ort_ms = median_ms(eager, a.runs), median_ms(session_runner(path, 224), a.runs)
    print(f"{'mobilenet-v3-small-cls @224':<28} {eager:>9.2f} {ort_ms:>12.2f} {'-':>15} {'-':>12}")


if __name__ == "__main__":
    main()

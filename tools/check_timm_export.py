"""Which timm networks export, as visionkit backbones, to ONNX and to MediaPipe (.tflite), for each task.

Each network is built as ``timm/<name>`` under the task's default neck and head (no download: random weights, with
BatchNorm statistics spread so the check is not on an identity), saved as a checkpoint and exported through the
same path as ``visionkit export``: the ONNX writer checks onnxruntime against PyTorch, the MediaPipe writer checks
MediaPipe Tasks against PyTorch, and either fails with the reason when they disagree. Prints one row per network
with yes / the first line of the error, and the seconds each export took.

    python tools/check_timm_export.py                          # the families in docs/transfer.md, every task
    python tools/check_timm_export.py --nets resnet18 --tasks detect --formats mediapipe

MediaPipe needs the edge packages (``make edge``; run this with .venv-edge/bin/python and timm installed there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

FAMILIES = [
    "resnet18",
    "efficientnet_b0",
    "mobilenetv3_small_050",
    "convnext_atto",
    "regnetx_002",
    "ghostnet_050",
    "mobilevit_xxs",
    "efficientvit_b0",
    "repvit_m0_9",
    "fastvit_t8",
    "edgenext_xx_small",
]


def checkpoint(name: str, task: str, imgsz: int, folder: Path) -> Path:
    from visionkit import Model
    from visionkit.models.build import build_model
    from visionkit.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = {**Model(f"timm/{name}", task=task).config, "num_classes": 3}
    net = build_model(config).eval()
    for m in net.modules():  # trained-looking statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {
        "task": task,
        "model_config": config,
        "state_dict": net.state_dict(),
        "names": ["a", "b", "c"],
        "imgsz": imgsz,
        "in_channels": 3,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    return save_checkpoint(ckpt, folder / f"{task}_{name}.pt")


def export(path: Path, fmt: str) -> tuple[str, float]:
    from visionkit import Model

    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            Model(str(path)).export(format=fmt, verbose=False)
        verdict = "yes"
    except Exception as e:  # the row says why
        verdict = f"no: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return verdict, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=FAMILIES, help="timm names (without timm/)")
    parser.add_argument("--tasks", nargs="+", default=["classify", "detect", "segment", "depth"])
    parser.add_argument("--formats", nargs="+", default=["onnx", "mediapipe"], choices=["onnx", "mediapipe"])
    parser.add_argument("--imgsz", type=int, default=64)
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="vk-timm-") as tmp:
        print(f"{'network':<24}{'task':<10}" + "".join(f"{f:<28}" for f in args.formats))
        for name in args.nets:
            for task in args.tasks:
                try:
                    path = checkpoint(name, task, args.imgsz, Path(tmp))
                except Exception as e:
                    print(f"{name:<24}{task:<10}build failed: {type(e).__name__}: {e}", flush=True)
                    failed += 1
                    continue
                cells = []
                for fmt in args.formats:
                    verdict, seconds = export(path, fmt)
                    failed += verdict != "yes"
                    cells.append(f"{verdict} ({seconds:.0f} s)")
                print(f"{name:<24}{task:<10}" + "".join(f"{c:<28}" for c in cells), flush=True)
    print(f"{failed} export(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

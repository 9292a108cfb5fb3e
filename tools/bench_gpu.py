#!/usr/bin/env python
"""CUDA check and throughput figures: mixed precision (off / bf16 / fp16 + GradScaler) through the real code paths.

    python tools/bench_gpu.py [--imgsz 640] [--batch 64] [--steps 20] [--epochs 5] [--out results.json]

1. Training-step throughput of yolo-n (forward, task-aligned loss, backward, optimizer step; synthetic images and
   boxes, so the data loader is not measured) for amp off, bf16 and fp16, channels_last; images/s and the ratio
   to fp32. Checks the loss stays finite.
2. End-to-end training of yolo-n on the shapes dataset through Model.train with amp=bf16 and amp=fp16 (data
   loading, mosaic, EMA, validation every epoch on CUDA): images/s over the training batches and mAP50-95.
3. fp16 ONNX export (half=True) of the trained detector, with and without in-graph NMS, checked against PyTorch
   by the exporter; then mAP of the fp16 file through the onnxruntime backend next to PyTorch's.
4. ``--parts epochs``: whole epochs, validation included, on a generated shapes set of --images images, as
   images/s beside the pure step throughput at the same settings (target on a GPU: end-to-end >= 60 % of the
   step), with the trainer's time split (data, copy, step, val, save). ``--cpu`` runs this part on the CPU (the
   data share of a detect epoch at imgsz 320 should stay under 15 %).
Prints one JSON line per figure and writes them all to --out. Needs CUDA (or --cpu / --smoke).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from visionkit import Model
from visionkit.cfg import resolve
from visionkit.data.synthetic import ensure_shapes
from visionkit.engine.trainer import amp_dtype
from visionkit.models.build import build_model
from visionkit.registry import REGISTRY
from visionkit.tasks.detect.task import DetectTask

RESULTS: list[dict] = []


def report(**figures) -> None:
    RESULTS.append(figures)
    print(json.dumps(figures), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_throughput(imgsz: int, batch: int, steps: int, device: torch.device) -> None:
    base = None
    for amp in (False, "bf16", "fp16"):
        ips, finite = timed_steps(amp, imgsz, batch, steps, device)
        base = base or ips
        report(
            figure="train_step",
            model="yolo-n",
            imgsz=imgsz,
            batch=batch,
            amp=str(amp),
            images_per_s=round(ips, 1),
            ratio_vs_fp32=round(ips / base, 2),
            loss_finite=finite,
            peak_mem_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda" else None,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()


def timed_steps(amp, imgsz: int, batch: int, steps: int, device: torch.device) -> tuple[float, bool]:
    """Images/s of ``steps`` training steps after 5 warm-up steps, and whether every loss was finite."""
    torch.manual_seed(0)
    cfg = REGISTRY.build("model", "yolo-n")
    net = build_model(cfg).to(device).to(memory_format=torch.channels_last).train()
    task = DetectTask()
    task.bind(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    dtype = amp_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    imgs = torch.rand(batch, 3, imgsz, imgsz, device=device).contiguous(memory_format=torch.channels_last)
    n = batch * 8  # 8 boxes per image
    rows = [
        torch.arange(batch, device=device).repeat_interleave(8)[:, None].float(),
        torch.randint(0, cfg["num_classes"], (n, 1), device=device).float(),
        torch.rand(n, 2, device=device) * 0.6 + 0.2,
        torch.rand(n, 2, device=device) * 0.2 + 0.05,
    ]
    batch_dict = {"img": imgs, "targets": torch.cat(rows, 1)}
    loss_args = resolve({}, task.keys)  # the loss gains (box, cls, dfl) at their defaults
    losses = []
    for i in range(5 + steps):
        if i == 5:
            sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = net(imgs)
        loss, _ = task.loss(out, batch_dict, loss_args)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        losses.append(loss.detach())
    sync(device)
    return steps * batch / (time.perf_counter() - t0), bool(torch.isfinite(torch.stack(losses)).all())


def end_to_end(epochs: int, imgsz: int, batch: int, project: Path, data: Path, device: torch.device) -> Path:
    best = None
    for amp in ("bf16", "fp16"):
        m = Model("yolo-n")
        times: list[tuple[int, float]] = []  # (epoch, time) at every batch end
        m.add_callback("on_batch_end", lambda t, log=times: (sync(device), log.append((t.epoch, time.perf_counter()))))
        t0 = time.perf_counter()
        metrics = m.train(
            data=str(data),
            imgsz=imgsz,
            epochs=epochs,
            batch=batch,
            workers=8,
            amp=amp,
            device="0" if device.type == "cuda" else "cpu",
            project=str(project),
            name=f"amp_{amp}",
            verbose=False,
            plots=False,
            close_mosaic=min(2, epochs - 1),
        )
        wall = time.perf_counter() - t0
        per_epoch = len(times) // epochs
        # images/s within epochs (from each epoch's first batch to its last: worker start-up and validation left
        # out), the first epoch skipped (cudnn autotuning)
        spans = [[t for e, t in times if e == epoch] for epoch in range(1, epochs)]
        seen = sum(len(s) - 1 for s in spans) * batch
        report(
            figure="train_end_to_end",
            model="yolo-n",
            imgsz=imgsz,
            batch=batch,
            epochs=epochs,
            amp=amp,
            batches_per_epoch=per_epoch,
            train_images_per_s=round(seen / sum(s[-1] - s[0] for s in spans), 1),
            wall_s=round(wall, 1),
            mAP50_95=round(metrics.get("mAP50-95", float("nan")), 4),
        )
        best = m.ckpt_path
    return best


def epochs_vs_steps(
    images: int, epochs: int, imgsz: int, batch: int, workers: int, project: Path, device: torch.device
) -> None:
    """End-to-end images/s over whole epochs (validation included; the first epoch left out) next to the step
    throughput of the same model, batch, size and amp."""
    from visionkit.data.synthetic import generate_shapes

    root = Path(f"datasets/shapes_{images}_{imgsz}")
    data = generate_shapes(root, n_train=images, n_val=max(images // 10, 8), size=imgsz, verbose=False)
    amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else False
    step_ips, _ = timed_steps(amp, imgsz, batch, 10 if device.type == "cpu" else 30, device)
    m = Model("yolo-n")
    marks: list[float] = []
    m.add_callback("on_epoch_start", lambda t: (sync(device), marks.append(time.perf_counter())))
    m.add_callback("on_epoch_end", lambda t: (sync(device), marks.append(time.perf_counter())))
    m.train(
        data=str(data / "data.yaml"),
        imgsz=imgsz,
        epochs=epochs,
        batch=batch,
        workers=workers,
        amp=amp,
        device="0" if device.type == "cuda" else "cpu",
        project=str(project),
        name="epochs",
        verbose=False,
        plots=False,
        close_mosaic=0,
        exist_ok=True,
    )
    spans = [marks[i + 1] - marks[i] for i in range(0, len(marks), 2)][1:]  # first epoch: warm-up, left out
    e2e = images * len(spans) / sum(spans)
    report(
        figure="epochs_vs_steps",
        model="yolo-n",
        device=str(device),
        imgsz=imgsz,
        batch=batch,
        amp=str(amp),
        images=images,
        workers=workers,
        step_images_per_s=round(step_ips, 1),
        end_to_end_images_per_s=round(e2e, 1),
        ratio=round(e2e / step_ips, 3),
        time_split=m.trainer.timer.summary(),
        data_share=round(m.trainer.timer.shares().get("data", 0.0), 3),
    )


def half_export(ckpt: Path, data: Path, project: Path) -> None:
    m = Model(str(ckpt))
    ref = m.val(data=str(data), project=str(project), verbose=False, plots=False, device="0")
    for nms in (False, True):
        t0 = time.perf_counter()
        path = m.export(half=True, dynamic=True, nms=nms, conf=0.001 if nms else None, verbose=True)
        report(
            figure="export_half",
            nms=nms,
            seconds=round(time.perf_counter() - t0, 1),
            file=str(path),
            size_mb=round(path.stat().st_size / 1e6, 2),
        )
        onnx_model = Model(str(path))
        got = onnx_model.val(data=str(data), project=str(project), verbose=False, plots=False)
        report(
            figure="half_onnx_val",
            nms=nms,
            pytorch_mAP50_95=round(ref["mAP50-95"], 4),
            onnx_fp16_mAP50_95=round(got["mAP50-95"], 4),
            diff=round(abs(ref["mAP50-95"] - got["mAP50-95"]), 4),
        )
        path.rename(path.with_name(f"best_half_nms{int(nms)}.onnx"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--project", default="runs/bench_gpu")
    ap.add_argument("--out", default="bench_gpu.json")
    ap.add_argument("--parts", default="steps,train,export,epochs", help="which of steps, train, export, epochs to run")
    ap.add_argument("--images", type=int, default=5000, help="epochs part: training images generated")
    ap.add_argument("--workers", type=int, default=8, help="epochs part: loader workers")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the script's code paths (no CUDA figures)")
    ap.add_argument("--cpu", action="store_true", help="the epochs part only, on the CPU (the CPU figures)")
    a = ap.parse_args()
    if a.cpu:
        project = Path(a.project)
        try:
            epochs_vs_steps(a.images, a.epochs, a.imgsz, a.batch, a.workers, project, torch.device("cpu"))
        finally:
            Path(a.out).write_text(json.dumps(RESULTS, indent=1))
        return
    if a.smoke:
        device, a.imgsz, a.batch, a.steps, a.epochs = torch.device("cpu"), 64, 2, 1, 2
    elif not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs CUDA (no GPU visible to PyTorch); --smoke runs its code paths on the CPU")
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        report(
            figure="device",
            name=torch.cuda.get_device_name(0),
            torch=torch.__version__,
            bf16=torch.cuda.is_bf16_supported(),
        )
    project = Path(a.project)
    try:
        parts = set(a.parts.split(","))
        if "steps" in parts:
            step_throughput(a.imgsz, a.batch, a.steps, device)
        data = ensure_shapes(Path("datasets/shapes"), verbose=False) / "data.yaml"
        best = end_to_end(
            a.epochs, 320 if device.type == "cuda" else 64, 32 if device.type == "cuda" else 8, project, data, device
        )
        if device.type == "cuda" and "export" in parts:  # fp16 export needs CUDA
            half_export(best, data, project)
        if "epochs" in parts:
            epochs_vs_steps(
                a.images if device.type == "cuda" else 16,
                a.epochs if device.type == "cuda" else 2,
                a.imgsz,
                a.batch,
                a.workers if device.type == "cuda" else 0,
                project,
                device,
            )
    finally:
        Path(a.out).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()

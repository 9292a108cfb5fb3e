"""One validation pass for any task: loss, the task's metrics and speed."""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

from visionkit.cfg import Settings
from visionkit.tasks.base import Metrics, Task


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    loader,
    task: Task,
    names: list[str],
    device: torch.device,
    args: Settings,
    amp_dtype: torch.dtype | None = None,
    desc: str = "val",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[dict[str, float], Metrics]:
    """Evaluate ``net`` on ``loader``; returns ({'val_loss', metrics..., 'ms_preprocess', 'ms_inference',
    'ms_postprocess'} (per image; data loading not included), the metrics object)."""
    was_training = net.training
    net.eval()
    metrics = task.new_metrics(names)
    total_loss, batches, images = 0.0, 0, 0
    ms = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    bar = tqdm(loader, desc=desc, leave=False, disable=not args.verbose, dynamic_ncols=True)
    for raw in bar:
        t0 = time.perf_counter()
        batch = task.preprocess_batch(raw, device)
        t1 = time.perf_counter()
        with autocast_context(device, amp_dtype):
            out = net(batch["img"].contiguous(memory_format=memory_format))
        t2 = time.perf_counter()
        if getattr(net, "raw_outputs", True):  # an exported file gives decoded outputs: no loss to compute
            loss, items = task.loss(out, batch, args)
            total_loss += float(items.get("loss", float(loss)))
        else:
            total_loss = float("nan")
        t3 = time.perf_counter()
        metrics.update(out, batch)  # post-processing (decode, NMS) and bookkeeping
        t4 = time.perf_counter()
        batches += 1
        images += batch["img"].shape[0]
        for key, dt in (("preprocess", t1 - t0), ("inference", t2 - t1), ("postprocess", t4 - t3)):
            ms[key] += 1000 * dt
    net.train(was_training)
    result = {
        "val_loss": total_loss / max(batches, 1),
        **metrics.compute(),
        **{f"ms_{k}": v / max(images, 1) for k, v in ms.items()},
    }
    return result, metrics

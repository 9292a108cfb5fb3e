"""One validation pass for any task: loss, the task's metrics and speed."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch
from tqdm import tqdm

from visionkit.tasks.base import Metrics, Task


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()


@torch.no_grad()
def validate(net: torch.nn.Module, loader, task: Task, names: list[str], device: torch.device, args: dict[str, Any],
             amp_dtype: torch.dtype | None = None, desc: str = "val",
             memory_format: torch.memory_format = torch.contiguous_format) -> tuple[dict[str, float], Metrics]:
    """Evaluate ``net`` on ``loader``; returns ({'val_loss', metrics..., 'ms_per_image'}, the metrics object)."""
    was_training = net.training
    net.eval()
    metrics = task.new_metrics(names)
    total_loss, batches, images = 0.0, 0, 0
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not args.get("verbose", True), dynamic_ncols=True)
    for raw in bar:
        batch = task.preprocess_batch(raw, device)
        with autocast_context(device, amp_dtype):
            out = net(batch["img"].contiguous(memory_format=memory_format))
        loss, items = task.loss(out, batch, args)
        total_loss += float(items.get("loss", float(loss)))
        batches += 1
        images += batch["img"].shape[0]
        metrics.update(out, batch)
    elapsed = time.perf_counter() - t0
    net.train(was_training)
    result = {"val_loss": total_loss / max(batches, 1), **metrics.compute(),
              "ms_per_image": 1000 * elapsed / max(images, 1)}
    return result, metrics

"""LR range test (Smith, 2015; the fastai recipe): raise the lr exponentially each step, track the smoothed loss,
suggest the lr where it falls fastest. Runs on a copy of the network: the caller's weights are untouched."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from visionkit.cfg import Settings
from visionkit.engine.setup import build_optimizer
from visionkit.tasks.base import Task


def lr_range_test(
    net: torch.nn.Module,
    loader,
    task: Task,
    device: torch.device,
    args: Settings,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> dict[str, Any]:
    """Returns {'lrs', 'losses' (smoothed), 'suggested_lr', 'min_loss_lr'}."""
    model = copy.deepcopy(net).to(device).train()
    optimizer, _ = build_optimizer(model, args.replace(lr0=start_lr))
    gamma = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    it = iter(loader)
    bar = tqdm(range(num_iter), desc="lrfind", disable=not args.verbose, leave=False)
    for step in bar:
        try:
            raw = next(it)
        except StopIteration:
            it = iter(loader)
            raw = next(it)
        lr = start_lr * gamma**step
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = task.preprocess_batch(raw, device)
        loss, _ = task.loss(model(batch["img"]), batch, args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (step + 1))  # bias correction
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smoothed:.4f}")
        if not math.isfinite(value) or smoothed > diverge * best:
            break
    return {"lrs": lrs, "losses": losses, **suggest(lrs, losses)}


def suggest(lrs: list[float], losses: list[float], skip_start: int = 5, skip_end: int = 3) -> dict[str, float]:
    """Steepest descent of the smoothed loss against log(lr), ignoring the noisy ends of the sweep."""
    lo, hi = skip_start, len(lrs) - skip_end
    if hi - lo < 3:
        lo, hi = 0, len(lrs)
    x = np.log10(np.asarray(lrs[lo:hi]))
    y = np.asarray(losses[lo:hi])
    grad = np.gradient(y, x) if len(x) > 1 else np.zeros(1)
    return {"suggested_lr": float(10 ** x[int(np.argmin(grad))]), "min_loss_lr": float(10 ** x[int(np.argmin(y))])}


def plot_lr_range(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lrs"], result["losses"])
    ax.set_xscale("log")
    ax.axvline(result["suggested_lr"], color="r", ls="--", label=f"suggested lr {result['suggested_lr']:.2e}")
    ax.set(xlabel="learning rate", ylabel="smoothed loss", title="LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

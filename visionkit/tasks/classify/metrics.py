"""Top-1, top-5 and per-class accuracy with a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.tasks.base import Metrics
from visionkit.tasks.shared import plot_confusion


class ClassifyMetrics(Metrics):
    fitness_key = "top1"

    def __init__(self, names: list[str]):
        self.names = names
        n = len(names)
        self.confusion = np.zeros((n, n), dtype=np.int64)  # rows: true, columns: predicted
        self.top5_hits = 0
        self.count = 0

    def update(self, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        target = batch["cls"].cpu()
        logits = outputs.detach().float().cpu()
        pred = logits.argmax(1)
        np.add.at(self.confusion, (target.numpy(), pred.numpy()), 1)
        k = min(5, logits.shape[1])
        self.top5_hits += int((logits.topk(k, dim=1).indices == target[:, None]).any(1).sum())
        self.count += len(target)

    def per_class(self) -> np.ndarray:
        support = self.confusion.sum(1)
        return np.divide(np.diag(self.confusion), support, out=np.full(len(support), np.nan), where=support > 0)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"top1": float(np.trace(self.confusion) / n), "top5": float(self.top5_hits / n)}

    def table(self) -> str:
        m = self.compute()
        support = self.confusion.sum(1)
        acc = self.per_class()
        width = max(8, *(len(s) for s in self.names))
        lines = [
            f"{'class':>{width}}  {'images':>7}  {'accuracy':>8}",
            f"{'all':>{width}}  {self.count:>7}  {m['top1']:>8.4f}   top5 {m['top5']:.4f}",
        ]
        for name, s, a in zip(self.names, support, acc):
            lines.append(f"{name:>{width}}  {s:>7}  {a:>8.4f}")
        return "\n".join(lines)

    def plot(self, save_dir: Path) -> list[Path]:
        return [
            plot_confusion(
                self.confusion, self.names, save_dir / "confusion_matrix.png", "confusion matrix (row-normalised)"
            )
        ]

"""The course's misclassification gallery: a classifier's most confident mistakes on its validation split, each
with the true and predicted class, the score and a Grad-CAM overlay of the predicted class."""

from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import UsageError
from visionkit.explain.cam import compute_cam, find_layer, overlay, spatial_layers
from visionkit.explain.targets import explainer_for


def most_confident_mistakes(net, loader, device, count: int) -> list[tuple[float, int, int, torch.Tensor]]:
    """(score, predicted, true, input (C, H, W)) of the ``count`` wrong predictions with the highest softmax
    score, highest first."""
    heap: list[tuple[float, int, int, int, torch.Tensor]] = []
    seen = 0
    with torch.no_grad():
        for x, y in loader:
            probs = net(x.to(device)).float().softmax(1).cpu()
            score, pred = probs.max(1)
            for i in torch.nonzero(pred != y).flatten().tolist():
                item = (float(score[i]), -(seen + i), int(pred[i]), int(y[i]), x[i].clone())
                if len(heap) < count:
                    heapq.heappush(heap, item)
                elif item[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, item)
            seen += len(y)
    return [(s, p, t, x) for s, _, p, t, x in sorted(heap, key=lambda h: h[:2], reverse=True)]


def _display(x: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised input back to a BGR uint8 picture."""
    img = x.float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    img = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[..., ::-1]) if img.shape[2] == 3 else img


def write_gallery(model, count: int, overrides: dict[str, Any]) -> Path | None:
    """gallery.png in the model's last run folder (a val run's), or a new val run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionkit.engine.utils import make_run_dir

    if model.task_name != "classify":
        raise UsageError(f"gallery=True shows a classifier's mistakes; this is a {model.task_name} model")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"bad value gallery={count!r}: true (16 images) or how many mistakes to show, e.g. gallery=8")
    args, data, loader, device = model.val_loader(**{**overrides, "workers": 0})
    net = model.net.to(device).eval()
    mistakes = most_confident_mistakes(net, loader, device, count)
    save_dir = getattr(model, "save_dir", None) or make_run_dir(args, model.task_name, "val")
    if not mistakes:
        if args.verbose:
            print(f"gallery: no mistakes on split '{args.split}' of {data.source}; nothing to show")
        return None
    x0 = mistakes[0][3][None].to(device)
    spatial = spatial_layers(net, x0)
    layer = find_layer(net, explainer_for("classify").default_layer(spatial, len(data.names)), spatial)
    cols = min(4, len(mistakes))
    rows = math.ceil(len(mistakes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (score, pred, true, x) in zip(axes.flat, mistakes):
        cam = compute_cam("gradcam", net, layer, x[None].to(device), lambda o, k=pred: o[k])
        picture = _display(x, data.mean, data.std)
        ax.imshow(overlay(picture, cam)[..., ::-1])
        ax.set_title(f"true {data.names[true]}\npredicted {data.names[pred]} {score:.2f}", fontsize=9)
    fig.suptitle(f"most confident mistakes ({len(mistakes)}), Grad-CAM of the predicted class", fontsize=10)
    fig.tight_layout()
    path = Path(save_dir) / "gallery.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    if args.verbose:
        print(f"gallery: {len(mistakes)} most confident mistake(s) in {path}")
    return path

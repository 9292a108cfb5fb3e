"""The course's misclassification gallery: a classifier's most confident mistakes on its validation split, each
tile the image and its explanation for the predicted class (Grad-CAM by default, any CAM method, or LIME's top
superpixels), captioned with the true and predicted class and the score."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import UsageError
from visionkit.explain.cam import compute_cam, find_layer, spatial_layers
from visionkit.explain.keys import LIME
from visionkit.explain.lime import lime, region_overlay, slic
from visionkit.explain.overlay import as_bgr, overlay
from visionkit.explain.targets import explainer_for

COLUMNS = 4  # tiles per row at most
TILE_INCHES = (5.0, 2.9)  # one tile (image | overlay, caption above) in the figure
DPI = 100
GAP = 2  # white pixels between a tile's image and its overlay
TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "eigencam": "EigenCAM", "scorecam": "Score-CAM"}
TITLES[LIME] = "LIME's top superpixels"


@dataclass
class Mistake:
    """One wrong prediction: its softmax ``score``, the ``predicted`` and ``true`` class ids, its ``index`` in the
    split (the dataset's order) and the normalised network input (C, H, W)."""

    score: float
    predicted: int
    true: int
    index: int
    image: torch.Tensor


def most_confident_mistakes(net, loader, task, device, count: int) -> list[Mistake]:
    """The ``count`` wrong predictions with the highest softmax score over ``loader`` (not shuffled), highest
    first; ties keep the split's order. Only ``count`` inputs are held at any time."""
    heap: list[tuple[float, int, Mistake]] = []  # a min-heap on (score, -index): its root is the one to drop
    seen = 0
    with torch.no_grad():
        for raw in loader:
            batch = task.preprocess_batch(raw, device)
            probs = net(batch["img"]).float().softmax(1).cpu()
            labels = batch["cls"].cpu()
            score, pred = probs.max(1)
            for i in torch.nonzero(pred != labels).flatten().tolist():
                key = (float(score[i]), -(seen + i))
                if len(heap) < count or key > heap[0][:2]:
                    m = Mistake(key[0], int(pred[i]), int(labels[i]), seen + i, batch["img"][i].detach().cpu().clone())
                    (heapq.heappush if len(heap) < count else heapq.heapreplace)(heap, (*key, m))
            seen += len(labels)
    return [m for *_, m in sorted(heap, key=lambda h: h[:2], reverse=True)]


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a gallery of ``n`` tiles."""
    cols = min(COLUMNS, n)
    return math.ceil(n / cols), cols


def _display(x: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised input back to a BGR uint8 picture."""
    img = x.float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    img = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[..., ::-1]) if img.shape[2] == 3 else as_bgr(img)


def _tile(picture: np.ndarray, explained: np.ndarray) -> np.ndarray:
    """The image and its explanation side by side (BGR): ``explained`` a map in 0..1 (overlaid) or a picture."""
    gap = np.full((picture.shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([picture, gap, explained if explained.ndim == 3 else overlay(picture, explained)], 1)


def _lime_picture(net, task, picture: np.ndarray, k: int, mean, std, device, opts: dict, seed: int) -> np.ndarray:
    """LIME of class ``k``'s probability at the displayed input ``picture``: the top superpixels, the rest dimmed."""

    def score(images: list[np.ndarray]) -> np.ndarray:
        x, _ = task.load_inputs(images, picture.shape[0], len(mean), mean, std, False)
        with torch.no_grad():
            return net(x.to(device)).float().softmax(1)[:, k].cpu().numpy()

    segments = slic(picture, opts["lime_segments"])
    (fit,) = lime(picture, segments, score, opts["lime_samples"], opts["lime_top"], seed, opts["lime_fill"])
    return region_overlay(picture, segments, fit.top)


def check_gallery_model(model) -> None:
    """Fail before validation runs when the gallery cannot apply to ``model``."""
    adapter = getattr(model.task, "explainer", None)
    if adapter is None or not adapter.gallery:
        raise UsageError(
            f"gallery= shows a classifier's mistakes (one class per image); '{model.ckpt_path}' is a "
            f"{model.task_name} model"
        )


def write_gallery(model, count: int, overrides: dict[str, Any], opts: dict[str, Any] | None = None) -> Path | None:
    """gallery.png in the model's last run folder (the val run's when val just ran) or a new val run folder.
    ``opts``: the explain keys (visionkit.explain.keys.split_gallery_keys); None: Grad-CAM at the default layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionkit.engine.utils import make_run_dir

    check_gallery_model(model)
    args, data, loader, device = model.val_loader(**overrides)
    task = model.task
    net = model.net.to(device).eval()
    mistakes = most_confident_mistakes(net, loader, task, device, count)
    if not mistakes:
        if args.verbose:
            print(f"gallery: no mistakes on split '{args.split}' of {data.source}; no gallery.png written")
        return None
    save_dir = Path(getattr(model, "save_dir", None) or make_run_dir(args, model.task_name, "val"))
    opts = opts or {"method": "gradcam", "layer": None}
    method = opts["method"]
    if method != LIME:
        x0 = mistakes[0].image[None].to(device)
        spatial = spatial_layers(net, x0)
        layer = find_layer(net, opts["layer"] or explainer_for(task).default_layer(spatial, len(data.names)), spatial)
    rows, cols = grid_shape(len(mistakes))
    fig, axes = plt.subplots(rows, cols, figsize=(TILE_INCHES[0] * cols, TILE_INCHES[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes):
        picture = _display(m.image, data.mean, data.std)
        if method == LIME:
            explained = _lime_picture(
                net, task, picture, m.predicted, data.mean, data.std, device, opts, int(args.seed)
            )
        else:
            explained = compute_cam(method, net, layer, m.image[None].to(device), lambda o, k=m.predicted: o[k])
        ax.imshow(_tile(picture, explained)[..., ::-1], interpolation="nearest")
        ax.set_title(f"true {data.names[m.true]}, predicted {data.names[m.predicted]} {m.score:.2f}", fontsize=9)
    title = f"{len(mistakes)} most confident mistake(s): image | {TITLES.get(method, method)} of the predicted class"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = save_dir / "gallery.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    if args.verbose:
        print(f"gallery: {len(mistakes)} most confident mistake(s) in {path}")
    return path

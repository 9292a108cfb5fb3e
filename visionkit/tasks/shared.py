"""Pieces several tasks use: finding a data.yaml dataset, closing mosaic, letterboxed prediction batches, reading
frames, default geometry for the joint transforms, and the confusion-matrix plot."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from visionkit.cfg import Settings
from visionkit.data.decode import read_scaled
from visionkit.data.dense import collate
from visionkit.data.format import image_size, load_data_yaml, split_images, split_unreadable, unreadable_message
from visionkit.data.rooms import ensure_rooms
from visionkit.data.rules import DatasetRules, layout_errors, layout_problems, refuse, spec_problems
from visionkit.data.synthetic import ensure_shapes
from visionkit.data.transforms import letterbox, rect_shapes
from visionkit.errors import DataError
from visionkit.tasks.base import Task

GENERATED = {"shapes": ensure_shapes, "rooms": ensure_rooms}  # named datasets made locally, never downloaded


def resolve_yaml_data(
    args: Settings, default: str, task: str, rules: DatasetRules | None = None
) -> tuple[Path, dict[str, Any]]:
    """The data.yaml a box or dense task trains on (``data=`` a data.yaml, a folder holding one, or a generated
    dataset's name: ``shapes``, ``rooms`` (depth)) and its parsed spec, refused when it breaks the task's ``rules``
    (what ``data check`` reports too); a missing validation split is an error rather than a silent fallback to
    training images."""
    data = args.data or default
    generator = GENERATED.get(str(data).lower())
    if generator is not None:  # a named dataset, generated on first use
        root = generator(Path(args.datasets_dir) / str(data).lower(), verbose=args.verbose)
        data = root / "data.yaml"
    path = Path(data)
    if path.is_dir() and (path / "data.yaml").is_file():
        path = path / "data.yaml"
    if path.suffix not in (".yaml", ".yml"):
        raise DataError(f"{task} data must be a data.yaml (or a folder holding one), got '{data}'")
    spec = load_data_yaml(path)
    if rules is not None:
        refuse(spec_problems(spec, rules))
    split = args.split
    if spec.get(split) is None and split != "train" and args.val:
        raise DataError(
            f"'{path}' has no '{split}' split; add '{split}: images/{split}' (e.g. re-import with "
            f"val=0.2) — visionkit does not silently validate on training images"
        )
    return path, spec


def split_files(data, split: str, train: bool, args: Settings, rules: DatasetRules | None = None) -> list[Path]:
    """The image files of ``split`` of a data.yaml dataset (``data.extra["spec"]``); training keeps the first
    ``fraction`` of them. An empty split is an error naming it, and so is a layout that loses annotations (images
    sharing a stem, label paths that are folders, no annotation file at all): the rules ``data check`` applies."""
    files = split_images(data.extra["spec"], split)
    unreadable = split_unreadable(data.extra["spec"], split)
    if unreadable:
        warnings.warn(unreadable_message(unreadable, f"split '{split}' of '{data.source}'"), stacklevel=2)
    if not files:
        raise DataError(f"split '{split}' of '{data.source}' has no images")
    layout = layout_problems(files)
    refuse([text for _, text in layout_errors(layout, split, data.source, rules is not None and rules.objects)])
    fraction = float(args.fraction) if train else 1.0
    return files[: max(1, int(len(files) * fraction))] if fraction < 1 else files


def joint_augment_args(args: Settings) -> dict[str, Any]:
    """``args`` with the geometry keys left at null filled for photos with boxes or masks: no rotation, horizontal
    flips half the time, no vertical flips."""
    return args.replace(
        degrees=args.degrees or 0.0, fliplr=0.5 if args.fliplr is None else args.fliplr, flipud=args.flipud or 0.0
    )


def close_mosaic_epoch(trainer) -> None:
    """Switch the training set's mosaic off for the last ``close_mosaic`` epochs (images then look like the
    validation images the model will be scored on)."""
    close = trainer.args.close_mosaic
    if close and trainer.epoch >= int(trainer.args.epochs) - close and trainer.train_set.mosaic:
        trainer.train_set.close_mosaic()
        if trainer.verbose:
            print(f"mosaic off for the last {close} epoch(s)")


def read_bgr(item) -> np.ndarray:
    """A path or an already decoded BGR frame → BGR uint8."""
    if isinstance(item, np.ndarray):
        return item
    img = cv2.imread(str(item), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image '{item}'")
    return img


def read_for_letterbox(item, imgsz: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A path or a decoded BGR frame → (BGR uint8, the original (height, width)). A large JPEG is decoded at
    1/2-1/8 of its size while its long side stays above ``imgsz`` (visionkit.data.decode: a 12 MP photo in 40 ms
    instead of 100); the image is then smaller than its original shape. A file whose size cannot be read first (a
    JPEG cut short) is decoded in full, as before."""
    if isinstance(item, np.ndarray):
        return item, item.shape[:2]
    try:
        w0, h0 = image_size(item)
    except Exception:
        img = read_bgr(item)
        return img, img.shape[:2]
    img = read_scaled(item, (w0, h0), imgsz)
    if img is None:
        raise DataError(f"cannot decode image '{item}'")
    return img, (h0, w0)


def letterbox_batch(items: list, imgsz: int, rect: bool) -> tuple[torch.Tensor, list[dict]]:
    """Images → a float RGB batch in 0..1 letterboxed to ``imgsz`` (``rect``: one snug stride-multiple shape for
    the batch, so a 16:9 frame at 640 becomes 384×640, not 640×640), and per image its original shape, per-axis
    scale (original → letterboxed pixels) and padding."""
    loaded = [read_for_letterbox(item, imgsz) for item in items]
    size = rect_shapes([(w, h) for _, (h, w) in loaded], imgsz, len(loaded))[0] if rect else imgsz
    batch, context = [], []
    for img, (h0, w0) in loaded:
        lb, r, pad = letterbox(img, size)
        batch.append(torch.from_numpy(np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))).float() / 255)
        h, w = img.shape[:2]
        # decoded reduced: the content's exact size over the original's, per axis (content_box gives it back)
        scale = (r, r) if (h, w) == (h0, w0) else (max(1, round(w * r)) / w0, max(1, round(h * r)) / h0)
        context.append({"shape": (h0, w0), "scale": scale, "pad": pad})
    return torch.stack(batch), context


def plot_confusion(confusion: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """A row-normalised confusion matrix (rows: true, columns: predicted) with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    cm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(min(4 + 0.4 * n, 16), min(3.5 + 0.4 * n, 15)))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30:
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        str(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if cm[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class DenseTask(Task):
    """What tasks with one dense map per image (segmentation masks, depth maps) share: the collated batch, its
    move to the device (the map under ``dense_key``), closing mosaic, and letterboxed prediction inputs."""

    dense_key = "mask"

    def collate_fn(self):
        return collate

    def preprocess_batch(self, batch, device: torch.device) -> dict[str, Any]:
        imgs, maps, metas = batch
        nb = device.type == "cuda"
        return {
            "img": imgs.to(device, non_blocking=nb).float() / 255,
            self.dense_key: maps.to(device, non_blocking=nb),
            "meta": metas,
        }

    def epoch_start(self, trainer) -> None:
        close_mosaic_epoch(trainer)

    def load_inputs(self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False):
        return letterbox_batch(items, imgsz, rect)

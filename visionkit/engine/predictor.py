"""Prediction for any task: resolve sources, batch them, run the network, let the task post-process."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import cv2
import torch
from tqdm import tqdm

from visionkit.data.format import is_image, list_images
from visionkit.errors import DataError
from visionkit.tasks.base import Task


def resolve_sources(source: str | Path | list) -> list[Path]:
    """An image file, a folder of images, a glob pattern, or a list of those → image paths."""
    if source is None:
        raise DataError("predict needs source= an image, a folder of images or a glob such as 'imgs/*.jpg'")
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in resolve_sources(s)]
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = list_images(path)
    elif path.is_file():
        files = [path]
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if is_image(Path(p)))
    else:
        raise DataError(f"source '{text}' does not exist; give an image, a folder of images or a glob")
    if not files:
        raise DataError(f"source '{text}' holds no images ({', '.join(('.jpg', '.png', '...'))})")
    return files


@torch.no_grad()
def predict(net: torch.nn.Module, task: Task, source, meta: dict[str, Any], args: dict[str, Any],
            device: torch.device, save_dir: Path | None = None) -> list[dict]:
    """Run ``net`` on every image of ``source``. ``meta`` holds names, imgsz, in_channels, mean, std."""
    files = resolve_sources(source)
    net.eval()
    results: list[dict] = []
    batch = max(1, int(args.get("batch", 16)))
    verbose = bool(args.get("verbose", True))
    for i in tqdm(range(0, len(files), batch), desc="predict", disable=not verbose or len(files) <= batch,
                  leave=False):
        chunk = files[i:i + batch]
        x, context = task.load_inputs(chunk, meta["imgsz"], meta["in_channels"], meta["mean"], meta["std"])
        out = net(x.to(device))
        for path, res in zip(chunk, task.postprocess(out, context, args, meta["names"])):
            results.append({"image": str(path), **res})
    if verbose:
        for r in results:
            print(f"{r['image']}: {task.describe(r)}")
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "predictions.json").write_text(json.dumps(results, indent=1))
        if args.get("save"):
            for r in results:
                img = task.annotate(Path(r["image"]), r, meta["in_channels"])
                cv2.imwrite(str(save_dir / (Path(r["image"]).stem + ".jpg")), img)
        if verbose:
            print(f"{len(results)} prediction(s) saved to {save_dir / 'predictions.json'}")
    return results

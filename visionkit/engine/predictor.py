"""Prediction for any task: resolve sources (images, folders, globs, videos, a webcam), batch them, run the
network, let the task post-process, save JSON / annotated images or video / text rows."""

from __future__ import annotations

import glob
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from visionkit.cfg import Settings
from visionkit.data.format import is_image, unreadable_images, unreadable_message, write_image
from visionkit.engine.diskfull import disk_full_guard
from visionkit.engine.video_out import VideoOut
from visionkit.errors import DataError
from visionkit.tasks.base import Task

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def resolve_sources(source) -> list[Path | int | np.ndarray]:
    """An image, a video, a folder, a glob, a webcam index (0, 1, ...), a decoded BGR image (an array), or a list
    of those → sources."""
    if source is None:
        raise DataError("predict needs source= an image, video, folder, glob such as 'imgs/*.jpg', or a webcam index")
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise DataError(
                f"an image array must be uint8 (H, W) or (H, W, 3) BGR, got {source.dtype} {tuple(source.shape)}"
            )
        return [source]
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in resolve_sources(s)]
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return [int(source)]
    text = str(source)
    path = Path(text)
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.is_file()]
    elif path.is_file():
        if unreadable_images([path]):
            raise DataError(unreadable_message([path], f"source '{text}'", labelled=False))
        found = [path]
    elif any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True))
    else:
        raise DataError(f"source '{text}' does not exist; give an image, a video, a folder or a glob")
    files = [p for p in found if p == path or is_image(p) or is_video(p)]
    if unreadable := unreadable_images(found):
        warnings.warn(unreadable_message(unreadable, f"source '{text}'", labelled=False), stacklevel=2)
    if not files:
        raise DataError(f"source '{text}' holds no images or videos")
    return files


def is_stream(source) -> bool:
    """A video file or a webcam: its frames come in order, with timestamps."""
    return isinstance(source, int) or (isinstance(source, Path) and is_video(source))


class ArrayImages(list):
    """Consecutive in-memory images of a source list, as (index, BGR array) pairs: one source, so they batch."""


def _grouped(sources: list) -> list:
    """Sources with each run of arrays gathered into one ArrayImages (named by their place in the list)."""
    out: list = []
    for index, src in enumerate(sources):
        if isinstance(src, np.ndarray):
            if not (out and isinstance(out[-1], ArrayImages)):
                out.append(ArrayImages())
            out[-1].append((index, src))
        else:
            out.append(src)
    return out


def _frames(source) -> Iterator[tuple[str, Any, float, int]]:
    """(name, item, fps, timestamp_ms): image paths pass through (read lazily); videos and webcams yield BGR frames
    with their time from the start (a file's from its frame rate, a webcam's from the clock); an array is named
    after its place among the sources (``array3``)."""
    if isinstance(source, ArrayImages):
        for k, img in source:
            yield f"array{k}", img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), 0.0, 0
        return
    if not is_stream(source):
        yield str(source), source, 0.0, 0
        return
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        hint = "" if isinstance(source, int) else " (not a video, or cut off before its first frame)"
        raise DataError(f"cannot open video source '{source}'{hint}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    start = time.monotonic()
    try:
        for i, frame in readable_frames(cap, source):
            elapsed = (time.monotonic() - start) if isinstance(source, int) else i / fps
            yield f"{source}#{i}", frame, fps, round(elapsed * 1000)
    finally:
        cap.release()


MAX_BAD_FRAMES = 25  # unreadable frames in a row after which a video file is taken to be cut off there


def readable_frames(cap, source) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for every frame that decodes. A file's broken frame is skipped (the frames after it are
    still read, keeping their indices) and a file that ends before its declared frame count (cut off) stops there,
    each with a warning naming the frames; a frame whose size differs from the first is warned about once."""
    total = 0 if isinstance(source, int) else max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    i, bad, size = 0, [], None
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            if not total or i >= total - 1:  # the end (a declared count may be one frame high)
                break
            bad.append(i)
            if len(bad) >= MAX_BAD_FRAMES:
                break
            i += 1
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)  # past the broken frame: the decoder resynchronises on the next
            continue
        if bad:
            warnings.warn(
                f"video '{source}': {_frame_span(bad)} could not be decoded and {'was' if len(bad) == 1 else 'were'} "
                f"skipped; the frames around {'it' if len(bad) == 1 else 'them'} are kept",
                stacklevel=3,
            )
            bad = []
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            warnings.warn(
                f"video '{source}': frame {i} is {frame.shape[1]}×{frame.shape[0]}, the frames before it "
                f"{size[1]}×{size[0]}; each frame is predicted at its own size (an annotated video keeps the "
                f"first size)",
                stacklevel=3,
            )
            size = frame.shape
        yield i, frame
        i += 1
    if bad or (total and i < total - 1):
        first = bad[0] if bad else i
        warnings.warn(
            f"video '{source}' is cut off or damaged from frame {first}: it declares {total} frames, frames "
            f"{first}–{total - 1} could not be read; the {first} frame(s) before are kept",
            stacklevel=3,
        )


def _frame_span(bad: list[int]) -> str:
    return f"frame {bad[0]}" if len(bad) == 1 else f"frames {bad[0]}–{bad[-1]}"


def _video_session(net, source: Path | int):
    """Backends with a video mode (MediaPipe's VIDEO running mode) run a video's frames as one timed stream:
    ``net.video()`` gives a context whose ``run(x, timestamps_ms)`` replaces ``net(x)``. Others: None."""
    open_video = getattr(net, "video", None)
    return open_video() if open_video is not None and is_stream(source) else None


def frame_stem(name: str) -> str:
    """``clip.mp4#12`` → ``clip_12``: one file per video frame (a webcam index gives ``webcam0_12``)."""
    source, _, index = name.rpartition("#")
    base = f"webcam{source}" if source.isdigit() else Path(source).stem
    return f"{base}_{index}"


def _stem(name: str, item) -> str:
    """File stem for one result: the image's, ``clip_12`` for a video frame, ``array3`` for an array."""
    if isinstance(item, Path):
        return item.stem
    return frame_stem(name) if "#" in name else name


class _Outputs:
    """Where one source's results go: annotated images or a video, and YOLO text rows."""

    def __init__(self, task: Task, src, save_dir: Path | None, args: Settings, channels: int):
        self.task, self.src, self.save_dir, self.args, self.channels = task, src, save_dir, args, channels
        self.save = bool(args.save) and save_dir is not None
        self.writer = None

    def write(self, name: str, item, result: dict, fps: float) -> None:
        if self.save:
            drawn = self.task.annotate(item, result, self.channels)
            if isinstance(item, Path) or isinstance(self.src, ArrayImages):  # one picture (a file or an array)
                write_image(self.save_dir / (_stem(name, item) + ".jpg"), drawn)  # raises on a full disk
            else:
                if self.writer is None:
                    stem = f"webcam{self.src}" if isinstance(self.src, int) else Path(str(self.src)).stem
                    self.writer = VideoOut(self.save_dir / f"{stem}.mp4", fps)
                self.writer.write(drawn)
        if self.save_dir is None:
            return
        stem = _stem(name, item)
        if self.args.save_txt:
            labels = self.save_dir / "labels"
            labels.mkdir(exist_ok=True)
            (labels / f"{stem}.txt").write_text("".join(r + "\n" for r in self.task.yolo_rows(result)))
        self.task.save_result(item, result, self.save_dir, stem, self.args)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def predict(
    net: torch.nn.Module,
    task: Task,
    source,
    meta: dict[str, Any],
    args: Settings,
    device: torch.device,
    save_dir: Path | None = None,
) -> list[dict]:
    """Run ``net`` on every image or frame of ``source``. ``meta`` holds names, imgsz, in_channels, mean, std."""
    # a disk that fills up while results are saved is one error naming the file, not a traceback
    with disk_full_guard(save_dir, "predict", "Free some space and predict again"):
        return _predict(net, task, source, meta, args, device, save_dir)


@torch.no_grad()
def _predict(
    net, task: Task, source, meta: dict[str, Any], args: Settings, device, save_dir: Path | None
) -> list[dict]:
    net.eval()
    if args.save_labelstudio:  # a labeling config that does not fit the model fails before predicting
        from visionkit.data.labelstudio.predictions_export import labelstudio_target

        labelstudio_target(task, meta["names"], args)
    results: list[dict] = []
    batch = max(1, int(args.batch))
    verbose = bool(args.verbose)

    def run(pending: list[tuple[str, Any, float, int]], sink: _Outputs, video) -> None:
        x, context = task.load_inputs(
            [it for _, it, _, _ in pending],
            meta["imgsz"],
            meta["in_channels"],
            meta["mean"],
            meta["std"],
            rect=bool(meta.get("rect")),
        )
        out = video.run(x, [ts for *_, ts in pending]) if video is not None else net(x.to(device))
        for (name, item, fps, _), res in zip(pending, task.postprocess(out, context, args, meta["names"])):
            res = {"image": name, **res}
            results.append(res)
            sink.write(name, item, res, fps)

    for src in _grouped(resolve_sources(source)):
        sink = _Outputs(task, src, save_dir, args, meta["in_channels"])
        pending: list[tuple[str, Any, float, int]] = []
        video = _video_session(net, src)
        try:
            with video if video is not None else nullcontext():
                label = f"{len(src)} array(s)" if isinstance(src, ArrayImages) else src
                for frame in tqdm(_frames(src), desc=f"predict {label}", disable=not verbose, leave=False):
                    pending.append(frame)
                    if len(pending) == batch:
                        run(pending, sink, video)
                        pending = []
                if pending:
                    run(pending, sink, video)
        finally:
            sink.close()
    if verbose:
        for r in results[:50]:
            print(f"{r['image']}: {task.describe(r)}")
        if len(results) > 50:
            print(f"... and {len(results) - 50} more")
    if save_dir is not None:
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]  # "_" keys: arrays
        (save_dir / "predictions.json").write_text(json.dumps(public, indent=1))
        if verbose:
            print(f"{len(results)} prediction(s) saved to {save_dir / 'predictions.json'}")
        if args.save_labelstudio:
            from visionkit.data.labelstudio.predictions_export import write_labelstudio_tasks

            write_labelstudio_tasks(results, task, meta["names"], save_dir, args, meta.get("model_path"), verbose)
    return results

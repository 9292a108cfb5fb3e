"""The tracking loop, for any task with a track mode: frames in order, the task's predictions on each, a tracker
that gives them identities, and the outputs (per-frame results, MOTChallenge rows, a video with ids and trails,
metrics against ground truth).

The task supplies a small facet (see :class:`TrackFacet`): how to read boxes out of its result, how to write the
ids back, how to draw and describe a tracked frame. Nothing here knows which task it serves.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from visionkit.cfg import Settings
from visionkit.engine.video_out import VideoOut
from visionkit.errors import DataError, UsageError
from visionkit.track.config import build_tracker, load_tracker_settings
from visionkit.track.mot import evaluate_mot, format_metrics, mot_row, read_mot


class TrackFacet(Protocol):
    def boxes(self, result: dict) -> np.ndarray:
        """(N, 6) rows x1, y1, x2, y2, score, class of one frame's result."""

    def attach(self, result: dict, ids: list[int | None]) -> None:
        """Write each box's track id (None: not tracked) into the result."""

    def annotate(self, frame: np.ndarray, result: dict, trails: dict[int, list]) -> np.ndarray:
        """The frame with its tracked boxes, ids and trails drawn (BGR)."""

    def describe(self, result: dict) -> str:
        """One console line for a tracked frame."""


class TrackResults(list):
    """Per-frame results (a list of dicts), with ``metrics`` (against ``gt=``, else None), ``speed`` (ms per frame)
    and ``save_dir``."""

    metrics: dict[str, float] | None = None
    speed: dict[str, float] | None = None
    save_dir: Path | None = None


def _image_files(paths) -> list[Path]:
    from visionkit.data.format import is_image

    return [p for p in paths if p.is_file() and is_image(p)]


def sequences(source) -> list[tuple[str, Any]]:
    """A source → [(name, frames)]: each video, webcam, folder of frames or glob is one sequence (frames in name
    order); one image array or a list of them is one sequence of in-memory frames."""
    from visionkit.engine.predictor import is_video

    if source is None:
        raise DataError("track needs source= a video, a folder of frames, a glob, a webcam index or image arrays")
    if isinstance(source, np.ndarray):
        return [("array", [source])]
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, np.ndarray) for s in source):
            return [("array", list(source))]
        return [seq for s in source for seq in sequences(s)]
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return [(f"webcam{source}", int(source))]
    text = str(source)
    path = Path(text)
    if path.is_file() and is_video(path):
        return [(path.stem, path)]
    if path.is_file():
        return [(path.stem, [path])]
    if path.is_dir():
        videos = [p for p in sorted(path.iterdir()) if p.is_file() and is_video(p)]
        images = _image_files(sorted(path.iterdir()))
        seqs = [(v.stem, v) for v in videos]
        if images:
            seqs.insert(0, (path.name if path.name != "img1" else path.parent.name, images))
        if seqs:
            return seqs
        raise DataError(f"source '{text}' holds no frames (images) or videos")
    if any(ch in text for ch in "*?["):
        images = _image_files(sorted(Path(p) for p in glob.glob(text, recursive=True)))
        if images:
            return [(Path(text).parent.name or "frames", images)]
    raise DataError(f"source '{text}' does not exist or holds no frames; give a video, a folder of frames or a glob")


def _frames(frames) -> Iterator[tuple[str, np.ndarray, float]]:
    """(name, BGR frame, fps) in order."""
    if isinstance(frames, list):
        for k, item in enumerate(frames):
            if isinstance(item, np.ndarray):
                img = item if item.ndim == 3 else cv2.cvtColor(item, cv2.COLOR_GRAY2BGR)
                yield f"array{k}", img, 30.0
                continue
            img = cv2.imread(str(item), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"cannot read frame '{item}' (not an image, or truncated)")
            yield str(item), img, 30.0
        return
    from visionkit.engine.predictor import readable_frames

    cap = cv2.VideoCapture(frames if isinstance(frames, int) else str(frames))
    if not cap.isOpened():
        raise DataError(f"cannot open video source '{frames}'")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        # broken frames skipped and a cut-off file ended, each with a warning naming the frames (as predict does)
        for i, frame in readable_frames(cap, frames):
            yield f"{frames}#{i}", frame, fps
    finally:
        cap.release()


def _fps_of(frames) -> float:
    if not isinstance(frames, Path):  # frames and webcams: 30 (a webcam is not opened twice)
        return 30.0
    cap = cv2.VideoCapture(frames if isinstance(frames, int) else str(frames))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps or 30.0


class _State:
    """A tracker with its frame count, kept on the model between calls when ``persist=True``."""

    def __init__(self, spec, fps: float):
        self.spec = spec
        self.tracker = build_tracker(spec, fps)


def run_tracking(model, task, args: Settings, facet: TrackFacet) -> TrackResults:
    """Track objects through every sequence of ``args.source`` with ``model`` (any backend: .pt, .onnx, .tflite)."""
    from visionkit.engine.diskfull import disk_full_guard

    # a disk that fills up while the video or the rows are written is one error naming the file
    with disk_full_guard(None, "track", "Free some space and track again"):
        return _run_tracking(model, task, args, facet)


def _run_tracking(model, task, args: Settings, facet: TrackFacet) -> TrackResults:
    from visionkit.engine.predictor import predict
    from visionkit.engine.utils import make_run_dir, select_device

    settings = load_tracker_settings(args.tracker)  # a bad tracker file fails before anything runs
    ckpt = model.ckpt
    if ckpt is None:
        raise UsageError("track needs trained weights: pass model=path/to/best.pt (or an exported .onnx/.tflite)")
    seqs = sequences(args.source)
    if args.gt is not None:
        if len(seqs) != 1:
            raise UsageError(f"gt={args.gt} scores one sequence; source= holds {len(seqs)} (give one video/folder)")
        gt = read_mot(args.gt)
    # ByteTrack's second association needs the low-score boxes: the detector keeps what the tracker can use
    # (the tracker file's track_low_thresh is the detector's threshold here; conf= is predict's)
    conf = float(settings["track_low_thresh"])
    frame_args = args.replace(conf=conf, save=False, save_txt=False, save_labelstudio=False, verbose=False, batch=1)
    device = select_device(args.device)
    net = model.net.to(device)
    task.bind(net)
    meta = {
        "names": ckpt["names"],
        "imgsz": int(args.imgsz or ckpt["imgsz"]),
        "in_channels": ckpt["in_channels"],
        "mean": ckpt["mean"],
        "std": ckpt["std"],
        "rect": bool(args.rect),
        "model_path": model.ckpt_path,
    }
    in_memory = all(not isinstance(f, (int, Path)) and all(isinstance(x, np.ndarray) for x in f) for _, f in seqs)
    writes = not in_memory or bool(args.save or args.save_txt)  # a stream fed frame by frame writes nothing
    save_dir = make_run_dir(args, task.name, "track") if writes else None
    results = TrackResults()
    verbose = bool(args.verbose)
    t_det = t_trk = 0.0
    rows_by_seq: dict[str, list[str]] = {}
    for index, (seq_name, frames) in enumerate(seqs):
        state = getattr(model, "_track_state", None)
        # persist continues the last call's tracker; the further sequences of one call are other scenes
        if not (args.persist and index == 0 and state is not None and state.spec == args.tracker):
            state = _State(args.tracker, _fps_of(frames))
        model._track_state = state
        tracker = state.tracker
        rows: list[str] = rows_by_seq.setdefault(seq_name, [])
        writer = None
        try:
            for name, frame, fps in tqdm(_frames(frames), desc=f"track {seq_name}", disable=not verbose, leave=False):
                t0 = time.perf_counter()
                res = predict(net, task, [frame], meta, frame_args, device, None)[0]
                t1 = time.perf_counter()
                dets = facet.boxes(res)
                out = tracker.update(dets, frame)
                t2 = time.perf_counter()
                t_det += t1 - t0
                t_trk += t2 - t1
                ids: list[int | None] = [None] * len(dets)
                for t in out.tracks:
                    ids[t.det_index] = t.id
                    rows.append(mot_row(out.frame, t.id, dets[t.det_index, :4], dets[t.det_index, 4]))
                facet.attach(res, ids)
                res = {
                    "image": name,
                    "sequence": seq_name,
                    "frame": out.frame,
                    **{k: v for k, v in res.items() if k != "image"},
                    "tracks": {**out.counts(), "new_ids": out.new, "lost_ids": out.lost, "removed_ids": out.removed},
                }
                results.append(res)
                if args.save and save_dir is not None:
                    drawn = facet.annotate(frame, res, {t.id: list(t.trail) for t in out.tracks})
                    if writer is None:
                        writer = VideoOut(save_dir / f"{seq_name}.mp4", fps)
                    writer.write(drawn)
        finally:
            if writer is not None:
                writer.close()
    n = max(1, len(results))
    results.speed = {
        "detector_ms": 1000 * t_det / n,
        "tracker_ms": 1000 * t_trk / n,
        "tracker_overhead_pct": 100 * t_trk / max(t_det, 1e-12),
        "fps": n / max(t_det + t_trk, 1e-12),
    }
    if verbose:
        for r in results[:50]:
            print(f"{r['image']}: {facet.describe(r)}")
        if len(results) > 50:
            print(f"... and {len(results) - 50} more")
        s = results.speed
        print(
            f"speed per frame: {s['detector_ms']:.2f} ms detector, {s['tracker_ms']:.2f} ms tracker "
            f"({s['tracker_overhead_pct']:.1f} % of the detector), {s['fps']:.1f} frames/s"
        )
    if args.gt is not None:
        pred = {}
        for row in rows_by_seq[seqs[0][0]]:
            v = [float(x) for x in row.split(",")]
            pred.setdefault(int(v[0]), []).append([v[1], *v[2:7]])
        results.metrics = evaluate_mot(gt, {f: np.asarray(r) for f, r in pred.items()})
        if verbose:
            print(f"{seqs[0][0]} against {args.gt}: {format_metrics(results.metrics)}")
    if save_dir is not None:
        if args.save_txt:
            (save_dir / "tracks").mkdir(exist_ok=True)
            for seq_name, rows in rows_by_seq.items():
                (save_dir / "tracks" / f"{seq_name}.txt").write_text("".join(r + "\n" for r in rows))
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
        (save_dir / "predictions.json").write_text(json.dumps(public, indent=1))
        summary = {"tracker": settings, "speed": results.speed, "metrics": results.metrics}
        (save_dir / "track.json").write_text(json.dumps(summary, indent=1))
        model.save_dir = save_dir
        results.save_dir = save_dir
    return results

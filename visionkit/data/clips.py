"""Generated video clips with known identities, for testing and measuring trackers.

The shapes of :mod:`visionkit.data.synthetic` (circles, squares, triangles, stars) move over a textured background
at constant velocity, bouncing off the frame's edges, spinning slowly; the first two cross each other head-on, so
one passes in front of the other. Objects are drawn far to near, so nearer ones occlude farther ones; the camera may
pan. Every frame's exact box (the full shape, occluded parts included, as MOTChallenge annotates) and visibility
(the fraction of the shape's pixels the camera sees) are known.

On disk, a sequence is MOTChallenge's layout::

    NAME/img1/000001.jpg ...
    NAME/gt/gt.txt          frame,id,x,y,w,h,consider,class+1,visibility (consider = 0 below min_visibility)
    NAME/seqinfo.ini

and :func:`generate_clips` also writes a detection dataset (images/labels, data.yaml) from other clips, so a
detector can be trained on the same kind of frames it will track on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from visionkit.data.output import atomic_dir
from visionkit.data.synthetic import NAMES, _texture, shape_polygon

CLIPS_VERSION = 1
MIN_VISIBILITY = 0.25  # ground truth rows below this visibility are flagged "ignore" (consider = 0)


@dataclass
class MovingShape:
    id: int
    cls: int
    r: float
    colour: np.ndarray
    pos: np.ndarray  # centre in view pixels
    vel: np.ndarray  # pixels per frame
    angle: float
    spin: float  # radians per frame
    depth: float  # smaller = nearer (drawn last)


def _objects(rng: np.random.Generator, n: int, size: int, crossing: bool) -> list[MovingShape]:
    out = []
    for i in range(n):
        r = size * rng.uniform(0.07, 0.11)
        speed = size * rng.uniform(0.008, 0.02)
        if crossing and i < 2:  # a head-on crossing across the middle: the nearer shape hides the farther one
            y = size * rng.uniform(0.4, 0.6)
            x = size * 0.18 if i == 0 else size * 0.82
            pos = np.array([x, y + (0 if i == 0 else rng.uniform(-0.04, 0.04) * size)])
            vel = np.array([speed if i == 0 else -speed, 0.0])
        else:
            pos = rng.uniform(r, size - r, 2)
            theta = rng.uniform(0, 2 * math.pi)
            vel = speed * np.array([math.cos(theta), math.sin(theta)])
        colour = rng.uniform(0, 255, 3)
        colour[rng.integers(3)] = rng.choice([0.0, 255.0])  # saturated, like the still shapes
        out.append(
            MovingShape(
                id=i + 1,
                cls=int(rng.integers(len(NAMES))),
                r=float(r),
                colour=colour,
                pos=pos.astype(np.float64),
                vel=vel.astype(np.float64),
                angle=float(rng.uniform(0, 2 * math.pi)),
                spin=float(rng.uniform(-0.05, 0.05)),
                depth=float(i + rng.uniform(0, 0.5)),
            )
        )
    return out


def make_clip(
    seed: int = 0, frames: int = 60, size: int = 160, objects: int = 4, pan: float = 0.0, crossing: bool = True
) -> dict:
    """Render one clip. Returns ``frames`` (BGR uint8 list) and ``tracks``: per frame, a list of dicts with id,
    cls, box (x1, y1, x2, y2, pixels, clipped to the frame) and visibility (0..1). ``pan``: camera motion in pixels
    per frame to the right (background and objects alike slide left in the view; objects still bounce off its
    edges)."""
    # separate streams, so that the same seed gives the same objects with or without a camera pan
    rng_bg, rng_obj, rng_noise = (np.random.default_rng([seed, 7919, k]) for k in range(3))
    margin = int(math.ceil(abs(pan) * frames)) + 1
    background = _texture(rng_bg, size + margin).astype(np.float32)
    shapes = _objects(rng_obj, objects, size, crossing)

    def offset(t: int) -> int:  # the view's left edge on the background (the camera moves right for pan > 0)
        return int(round(pan * t)) if pan >= 0 else margin - 1 + int(round(pan * t))

    for s in shapes:  # positions live in background coordinates: a panning camera moves them in the view
        s.pos[0] += offset(0)
    out_frames, out_tracks = [], []
    for t in range(frames):
        off = offset(t)
        img = background[:size, off : off + size].copy()
        masks = {}
        for s in sorted(shapes, key=lambda s: -s.depth):  # painter's algorithm: far to near
            poly = shape_polygon(NAMES[s.cls], s.pos[0] - off, s.pos[1], s.r, s.angle)
            region = np.zeros((size, size), np.uint8)
            cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1)
            inside = region.astype(bool)
            img[inside] = s.colour
            for seen, _ in masks.values():
                seen &= ~inside  # what is now covered is no longer visible
            masks[s.id] = (inside, poly)
        rows = []
        for s in shapes:
            inside, poly = masks[s.id]
            full = max(1, int(_area_mask(poly, size)))
            x1, y1 = np.clip(poly.min(0), 0, size)
            x2, y2 = np.clip(poly.max(0), 0, size)
            rows.append(
                {
                    "id": s.id,
                    "cls": s.cls,
                    "box": [float(x1), float(y1), float(x2), float(y2)],
                    "visibility": float(min(1.0, inside.sum() / full)),
                }
            )
        noise = rng_noise.normal(0, 3, img.shape).astype(np.float32)
        out_frames.append(cv2.GaussianBlur(np.clip(img + noise, 0, 255).astype(np.uint8), (3, 3), 0))
        out_tracks.append(sorted(rows, key=lambda r: r["id"]))
        nxt = offset(t + 1)
        for s in shapes:  # constant velocity, bouncing off the view's edges
            s.pos += s.vel
            view = s.pos - np.array([nxt, 0.0])
            for k in range(2):
                if view[k] < s.r or view[k] > size - s.r:
                    s.vel[k] = -s.vel[k]
                    s.pos[k] = np.clip(view[k], s.r, size - s.r) + (nxt if k == 0 else 0)
            s.angle += s.spin
    return {"frames": out_frames, "tracks": out_tracks, "size": size, "fps": 30.0}


def _area_mask(poly: np.ndarray, size: int) -> int:
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1)
    return int(region.sum())


def gt_rows(clip: dict, min_visibility: float = MIN_VISIBILITY) -> list[str]:
    """MOTChallenge ground truth rows of a clip: frame,id,x,y,w,h,consider,class+1,visibility."""
    rows = []
    for f, objs in enumerate(clip["tracks"], 1):
        for o in objs:
            x1, y1, x2, y2 = o["box"]
            consider = int(o["visibility"] >= min_visibility)
            rows.append(
                f"{f},{o['id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{consider},{o['cls'] + 1},"
                f"{o['visibility']:.3f}"
            )
    return rows


def write_sequence(clip: dict, folder: str | Path, name: str) -> Path:
    """Write ``clip`` as a MOTChallenge sequence ``folder/name`` (img1/, gt/gt.txt, seqinfo.ini)."""
    seq = Path(folder) / name
    (seq / "img1").mkdir(parents=True, exist_ok=True)
    (seq / "gt").mkdir(exist_ok=True)
    for f, frame in enumerate(clip["frames"], 1):
        cv2.imwrite(str(seq / "img1" / f"{f:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (seq / "gt" / "gt.txt").write_text("\n".join(gt_rows(clip)) + "\n")
    size = clip["size"]
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={int(clip['fps'])}\nseqLength={len(clip['frames'])}\n"
        f"imWidth={size}\nimHeight={size}\nimExt=.jpg\n"
    )
    return seq


def yolo_box_rows(objs: list[dict], size: int, min_visibility: float = MIN_VISIBILITY) -> list[str]:
    """Detection labels of one frame: ``cls cx cy w h`` (normalised) for every object seen enough."""
    rows = []
    for o in objs:
        if o["visibility"] < min_visibility:
            continue
        x1, y1, x2, y2 = (v / size for v in o["box"])
        rows.append(f"{o['cls']} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
    return rows


def generate_clips(
    root: str | Path,
    train_clips: int = 6,
    val_clips: int = 2,
    track_clips: int = 2,
    frames: int = 60,
    size: int = 160,
    objects: int = 4,
    pan: float = 1.0,
    every: int = 2,
    seed: int = 0,
    verbose: bool = True,
) -> Path:
    """Write a detection dataset (every ``every``-th frame of ``train_clips`` and ``val_clips`` clips, with YOLO box
    labels) and ``track_clips`` further MOTChallenge sequences under ``root/seqs`` (clips the detector never saw).
    Clips alternate between a still and a panning camera (``pan`` pixels per frame)."""
    root = Path(root)
    with atomic_dir(root, exist_ok=True, written_by="visionkit clips generator") as tmp:
        index = 0
        for split, count in (("train", train_clips), ("val", val_clips)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for _ in range(count):
                clip = make_clip(seed * 1000 + index, frames, size, objects, pan * (index % 2), crossing=True)
                for f in range(0, frames, every):
                    stem = f"clip{index:03d}_{f + 1:06d}"
                    cv2.imwrite(str(tmp / "images" / split / f"{stem}.jpg"), clip["frames"][f])
                    rows = yolo_box_rows(clip["tracks"][f], size)
                    (tmp / "labels" / split / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))
                index += 1
        seqs = []
        for k in range(track_clips):
            clip = make_clip(seed * 1000 + index, frames, size, objects, pan * (k % 2), crossing=True)
            seqs.append(write_sequence(clip, tmp / "seqs", f"clip{index:03d}").name)
            index += 1
        data = {
            "path": ".",
            "train": "images/train",
            "val": "images/val",
            "names": {i: n for i, n in enumerate(NAMES)},
            "sequences": seqs,
            "generator": {
                "name": "clips",
                "version": CLIPS_VERSION,
                "frames": frames,
                "size": size,
                "objects": objects,
                "pan": pan,
                "seed": seed,
            },
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if verbose:
        print(f"clips: wrote {train_clips}+{val_clips} detection clips and {track_clips} tracking sequences to {root}")
    return root

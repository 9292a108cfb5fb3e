"""The embedded default dataset "shapes": coloured circles, squares, triangles and stars on textured backgrounds.

Generated deterministically (one seed per image) with no network, in the on-disk format of docs/dataset-format.md,
with everything each task needs from the same scenes:

- ``images/{train,val}/NNNNN.jpg``   the rendered scene
- ``labels/{train,val}/NNNNN.txt``   one YOLO polygon row per shape (boxes are the polygons' extents)
- ``masks/{train,val}/NNNNN.png``    semantic mask, 0 = background, 1 + class id for shapes (``mask_names``)
- ``depth/{train,val}/NNNNN.png``    uint16 depth in millimetres (``depth_scale: 1000``): a tilted floor-to-wall
                                     background plane and one fronto-parallel plane per shape
- ``classify/{train,val}/<class>/NNNNN.jpg``  image-level class: the largest (and nearest) shape in the scene
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

from visionkit.data.output import atomic_dir

NAMES = ("circle", "square", "triangle", "star")
GENERATOR_VERSION = 2


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (K, 2) in pixels of a shape of circumradius ``r`` rotated by ``angle`` radians."""
    if kind == "circle":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        radii = np.full_like(t, r)
    elif kind == "square":
        t = np.arange(4) * math.pi / 2 + math.pi / 4
        radii = np.full_like(t, r)
    elif kind == "triangle":
        t = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        radii = np.full_like(t, r)
    elif kind == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    else:
        raise ValueError(f"unknown shape '{kind}'")
    t = t + angle
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field plus stripes: enough clutter that shapes must be recognised, not thresholded."""
    coarse = rng.uniform(40, 200, size=(6, 6, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(8, 30)
    stripes = 18 * np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    img += stripes[..., None]
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255)


def render_scene(index: int, seed: int = 0, size: int = 320) -> dict:
    """Render scene ``index``: returns image (H, W, 3 BGR uint8), objects, mask (uint8), depth (float32 metres)."""
    rng = np.random.default_rng([seed, index])
    img = _texture(rng, size)
    # background: a plane receding upwards, 3.2 m at the bottom row to 6 m at the top row (±0.2 m)
    rows = np.linspace(6.0, 3.2, size, dtype=np.float32)[:, None]
    depth = np.repeat(rows, size, axis=1) + rng.uniform(-0.2, 0.2)
    mask = np.zeros((size, size), np.uint8)

    n = int(rng.integers(1, 5))
    objects = []
    placed: list[tuple[float, float, float]] = []
    for i in range(n):
        primary = i == 0
        r = size * (rng.uniform(0.2, 0.3) if primary else rng.uniform(0.07, 0.13))
        cls = int(rng.integers(len(NAMES)))
        # shapes never overlap, so every labelled shape is fully visible (labels = what the camera sees)
        for _ in range(30):
            cx, cy = rng.uniform(r, size - r, size=2)
            if all((cx - px) ** 2 + (cy - py) ** 2 > (r + pr) ** 2 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        z = rng.uniform(1.0, 1.5) if primary else rng.uniform(1.7, 2.6)
        colour = rng.uniform(0, 255, size=3)
        colour[rng.integers(3)] = rng.choice([0.0, 255.0])  # saturated, so shapes stand out from the texture
        objects.append(
            {
                "cls": cls,
                "poly": shape_polygon(NAMES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi)),
                "depth": float(z),
                "colour": colour,
            }
        )
    # painter's algorithm: far to near, so the mask and depth show what the camera sees
    for obj in sorted(objects, key=lambda o: -o["depth"]):
        pts = np.round(obj["poly"]).astype(np.int32)
        region = np.zeros((size, size), np.uint8)
        cv2.fillPoly(region, [pts], 1)
        inside = region.astype(bool)
        shade = obj["colour"] * rng.uniform(0.85, 1.0) + rng.normal(0, 4, size=(int(inside.sum()), 3))
        img[inside] = np.clip(shade, 0, 255)
        mask[inside] = obj["cls"] + 1
        depth[inside] = obj["depth"]
    image = cv2.GaussianBlur(img.astype(np.uint8), (3, 3), 0)  # soften aliased edges like a camera would
    return {
        "image": image,
        "objects": objects,
        "mask": mask,
        "depth": depth.astype(np.float32),
        "primary": objects[0]["cls"],
    }


def polygon_row(cls: int, poly: np.ndarray, size: int) -> str:
    coords = " ".join(f"{v:.6f}" for v in np.clip(poly / size, 0, 1).reshape(-1))
    return f"{cls} {coords}"


def generate_shapes(
    root: str | Path, n_train: int = 480, n_val: int = 120, size: int = 320, seed: int = 0, verbose: bool = True
) -> Path:
    """Write the shapes dataset under ``root`` (atomically: a temporary folder renamed at the end)."""
    root = Path(root)
    with atomic_dir(root, exist_ok=True, written_by="visionkit shapes generator") as tmp:
        index = 0
        for split, count in (("train", n_train), ("val", n_val)):
            for sub in ("images", "labels", "masks", "depth"):
                (tmp / sub / split).mkdir(parents=True)
            for name in NAMES:
                (tmp / "classify" / split / name).mkdir(parents=True)
            for _ in range(count):
                scene = render_scene(index, seed, size)
                stem = f"{index:05d}"
                image_path = tmp / "images" / split / f"{stem}.jpg"
                cv2.imwrite(str(image_path), scene["image"], [cv2.IMWRITE_JPEG_QUALITY, 92])
                rows = [polygon_row(o["cls"], o["poly"], size) for o in scene["objects"]]
                (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(rows) + "\n")
                cv2.imwrite(str(tmp / "masks" / split / f"{stem}.png"), scene["mask"])
                depth_mm = np.clip(np.round(scene["depth"] * 1000), 0, 65535).astype(np.uint16)
                cv2.imwrite(str(tmp / "depth" / split / f"{stem}.png"), depth_mm)
                _link_or_copy(image_path, tmp / "classify" / split / NAMES[scene["primary"]] / f"{stem}.jpg")
                index += 1
        data = {
            "path": ".",
            "train": "images/train",
            "val": "images/val",
            "names": {i: n for i, n in enumerate(NAMES)},
            "mask_names": {0: "background", **{i + 1: n for i, n in enumerate(NAMES)}},
            "ignore_index": 255,
            "depth_scale": 1000.0,
            "classify": "classify",
            "generator": {
                "name": "shapes",
                "version": GENERATOR_VERSION,
                "n_train": n_train,
                "n_val": n_val,
                "size": size,
                "seed": seed,
            },
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if verbose:
        print(f"shapes: wrote {n_train} train + {n_val} val scenes ({size}×{size}) to {root}")
    return root


def is_current(root: Path, name: str, version: int) -> bool:
    """True when ``root`` holds a complete dataset written by generator ``name`` at ``version``."""
    spec = Path(root) / "data.yaml"
    generator = (yaml.safe_load(spec.read_text()) or {}).get("generator", {}) if spec.is_file() else {}
    return generator.get("name") == name and generator.get("version") == version


def ensure_shapes(root: str | Path, **kw) -> Path:
    """Generate the shapes dataset under ``root`` unless a complete one is already there."""
    root = Path(root)
    if not is_current(root, "shapes", GENERATOR_VERSION):  # missing, or made by an older generator
        generate_shapes(root, **kw)
    return root


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

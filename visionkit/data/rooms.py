"""The embedded depth dataset "rooms": textured rooms with boxes on the floor, ray-cast with exact depth.

Each scene is a box-shaped room (floor, ceiling, back and side walls) holding 2-5 boxes of random size and yaw on
the floor, seen by a pinhole camera of random height, field of view, pitch and yaw. Every pixel's ray is
intersected with every surface in closed form, so the depth (distance along the optical axis, in metres) is exact,
with the depth edges and perspective slopes that real rooms have and the flat ``shapes`` scenes lack. Surfaces get
procedural textures (checkers, planks, noise) in their own coordinates and Lambert shading, so depth cannot be read
off the colour alone.

Written in the on-disk format (docs/dataset-format.md): ``images/{train,val}/NNNNN.jpg`` and
``depth/{train,val}/NNNNN.png`` (uint16 millimetres, ``depth_scale: 1000``); generated deterministically, atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import yaml

from visionkit.data.output import atomic_dir
from visionkit.data.synthetic import is_current

ROOMS_VERSION = 1


def _camera_rays(h: int, w: int, fov: float, pitch: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray directions (H, W, 3) scaled so that the camera-frame z component is 1 (the ray parameter
    is then the depth), and the camera's rotation matrix (camera → world; x right, y up, z forward)."""
    f = 0.5 * w / math.tan(math.radians(fov) / 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cam = np.stack([(xs + 0.5 - w / 2) / f, -(ys + 0.5 - h / 2) / f, np.ones_like(xs)], -1)
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    rot_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rot_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot = rot_yaw @ rot_pitch
    return cam @ rot.T, rot


def _planes(rays, origin, room) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(t, normal, surface id) for the room's six faces; t = inf where a ray does not hit the face's side."""
    half_w, depth_back, floor, ceiling = room
    out = []
    for axis, value, normal, sid in (
        (1, floor, (0, 1, 0), 0),
        (1, ceiling, (0, -1, 0), 1),
        (2, depth_back, (0, 0, -1), 2),
        (0, -half_w, (1, 0, 0), 3),
        (0, half_w, (-1, 0, 0), 3),
        (2, -1.0, (0, 0, 1), 2),
    ):
        d = rays[..., axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - origin[axis]) / d
        out.append((np.where(t > 1e-6, t, np.inf), np.array(normal, np.float64), sid))
    return out


def _box_hits(rays, origin, box) -> tuple[np.ndarray, np.ndarray]:
    """Slab intersection with a box rotated about the vertical axis: (t, normal (H, W, 3)) of the entry point."""
    cx, cz, sx, sy, sz, yaw, floor = box
    c, s = math.cos(yaw), math.sin(yaw)
    to_box = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # world → box frame (rotation by -yaw)
    o = to_box @ (np.asarray(origin) - np.array([cx, floor + sy / 2, cz]))
    d = rays @ to_box.T
    half = np.array([sx, sy, sz]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_enter, t_exit = near.max(-1), far.min(-1)
    hit = (t_enter <= t_exit) & (t_enter > 1e-6)
    axis = near.argmax(-1)
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1)[..., 0])
    normal_box = np.zeros(d.shape)
    np.put_along_axis(normal_box, axis[..., None], sign[..., None], -1)
    return np.where(hit, t_enter, np.inf), normal_box @ to_box  # back to the world frame


def _texture(points: np.ndarray, kind: int, rng_params: np.ndarray) -> np.ndarray:
    """A procedural colour (H, W, 3) in 0..1 from world coordinates: checkers, planks or stripes with noise."""
    base, other, period, phase = rng_params[:3], rng_params[3:6], rng_params[6], rng_params[7]
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    if kind == 0:  # checkers on the floor plane
        t = (np.floor(x / period) + np.floor(z / period)) % 2
    elif kind == 1:  # planks along x
        t = (np.floor(z / (period * 0.4) + phase) % 2) * 0.6 + 0.2 * np.sin(x * 9 + phase)
    else:  # stripes and a soft pattern on walls and boxes
        t = 0.5 + 0.5 * np.sin((x + y * 0.7 + z) * 2 * math.pi / period + phase)
    t = np.clip(t, 0, 1)[..., None]
    return base * (1 - t) + other * t


def render_room(index: int, seed: int, h: int, w: int) -> dict[str, np.ndarray]:
    """One scene: BGR image (uint8), depth (float32 metres along the optical axis), and the scene parameters."""
    rng = np.random.default_rng([seed, index, 7])
    cam_height = rng.uniform(1.0, 1.8)
    room = (rng.uniform(2.0, 3.5), rng.uniform(4.0, 9.0), -cam_height, rng.uniform(2.4, 3.2) - cam_height)
    rays, _ = _camera_rays(h, w, rng.uniform(50, 80), rng.uniform(-0.05, 0.35), rng.uniform(-0.4, 0.4))
    origin = np.zeros(3)
    best_t = np.full((h, w), np.inf)
    normal = np.zeros((h, w, 3))
    surface = np.full((h, w), -1)
    for t, n, sid in _planes(rays, origin, room):
        closer = t < best_t
        best_t[closer], normal[closer], surface[closer] = t[closer], n, sid
    for k in range(int(rng.integers(2, 6))):
        size = rng.uniform(0.3, 1.3, 3)
        box = (
            rng.uniform(-room[0] + 0.6, room[0] - 0.6),
            rng.uniform(1.5, room[1] - 0.8),
            size[0],
            size[1],
            size[2],
            rng.uniform(0, math.pi),
            room[2],
        )
        t, n = _box_hits(rays, origin, box)
        closer = t < best_t
        best_t[closer], normal[closer], surface[closer] = t[closer], n[closer], 4 + k
    points = rays * best_t[..., None]
    colour = np.zeros((h, w, 3))
    for sid in np.unique(surface):
        sel = surface == sid
        params = rng.uniform(0.1, 0.95, 8)
        params[6] = rng.uniform(0.25, 0.9)
        colour[sel] = _texture(points[sel], 0 if sid == 0 else 1 if sid == 1 else 2, params)
    light = np.array([0.3, 0.8, -0.5]) / np.linalg.norm([0.3, 0.8, -0.5])
    shade = 0.35 + 0.65 * np.clip(-(normal @ light), 0, 1)  # Lambert, with ambient light
    falloff = 1.0 / (1.0 + 0.02 * best_t**2)  # a lamp near the camera: far surfaces are darker
    img = colour * (shade * (0.6 + 0.4 * falloff))[..., None] * 255 + rng.normal(0, 3, (h, w, 3))
    image = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)[..., ::-1]
    return {"image": np.ascontiguousarray(image), "depth": best_t.astype(np.float32), "room": room}


def generate_rooms(
    root: str | Path,
    n_train: int = 400,
    n_val: int = 100,
    height: int = 192,
    width: int = 256,
    seed: int = 0,
    verbose: bool = True,
) -> Path:
    """Write the rooms dataset under ``root`` (atomically)."""
    root = Path(root)
    with atomic_dir(root, exist_ok=True, written_by="visionkit rooms generator") as tmp:
        index = 0
        for split, count in (("train", n_train), ("val", n_val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "depth" / split).mkdir(parents=True)
            for _ in range(count):
                scene = render_room(index, seed, height, width)
                cv2.imwrite(
                    str(tmp / "images" / split / f"{index:05d}.jpg"), scene["image"], [cv2.IMWRITE_JPEG_QUALITY, 92]
                )
                depth_mm = np.clip(np.round(scene["depth"] * 1000), 0, 65535).astype(np.uint16)
                cv2.imwrite(str(tmp / "depth" / split / f"{index:05d}.png"), depth_mm)
                index += 1
        data = {
            "path": ".",
            "train": "images/train",
            "val": "images/val",
            "names": {0: "scene"},
            "depth_scale": 1000.0,
            "generator": {
                "name": "rooms",
                "version": ROOMS_VERSION,
                "n_train": n_train,
                "n_val": n_val,
                "height": height,
                "width": width,
                "seed": seed,
            },
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if verbose:
        print(f"rooms: wrote {n_train} train + {n_val} val scenes ({width}×{height}) to {root}")
    return root


def ensure_rooms(root: str | Path, **kw) -> Path:
    """Generate the rooms dataset under ``root`` unless a current one is already there."""
    root = Path(root)
    if not is_current(root, "rooms", ROOMS_VERSION):
        generate_rooms(root, **kw)
    return root

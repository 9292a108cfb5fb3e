"""The rooms depth generator: depth from the ray caster equals the closed-form depth of known surfaces."""

import math

import numpy as np
import pytest
import yaml

from visionkit.data.format import read_depth
from visionkit.data.rooms import _box_hits, _camera_rays, _planes, generate_rooms, render_room


def test_floor_depth_is_exact():
    h, w, fov, cam_height = 60, 80, 60.0, 1.5
    rays, _ = _camera_rays(h, w, fov, 0.0, 0.0)
    room = (3.0, 50.0, -cam_height, 10.0)
    floor_t = _planes(rays, np.zeros(3), room)[0][0]
    f = 0.5 * w / math.tan(math.radians(fov) / 2)
    for row in (40, 50, 59):  # below the horizon: the ray meets the floor at depth h_cam * f / (pixels below centre)
        assert floor_t[row, 10] == pytest.approx(cam_height * f / (row + 0.5 - h / 2), rel=1e-12)
    assert np.isinf(floor_t[10, 10])  # above the horizon the floor is never hit


def test_box_front_face_depth_is_exact():
    rays, _ = _camera_rays(41, 41, 60.0, 0.0, 0.0)
    t, normal = _box_hits(rays, np.zeros(3), (0.0, 4.0, 1.0, 1.0, 1.0, 0.0, -0.5))  # centred 4 m ahead, 1 m cube
    assert t[20, 20] == pytest.approx(3.5, rel=1e-12) and np.allclose(normal[20, 20], [0, 0, -1])
    assert np.isinf(t[0, 0])


def test_generated_scenes_are_deterministic_and_in_the_format(tmp_path):
    a, b = render_room(3, 0, 48, 64), render_room(3, 0, 48, 64)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["depth"], b["depth"])
    assert (a["depth"] > 0).all() and np.isfinite(a["depth"]).all()
    root = generate_rooms(tmp_path / "rooms", n_train=3, n_val=2, height=48, width=64, verbose=False)
    spec = yaml.safe_load((root / "data.yaml").read_text())
    assert spec["depth_scale"] == 1000.0 and spec["generator"]["name"] == "rooms"
    depth = read_depth(root / "depth/val/00003.png", spec["depth_scale"])
    assert np.allclose(depth, render_room(3, 0, 48, 64)["depth"], atol=0.0005)  # millimetre PNG

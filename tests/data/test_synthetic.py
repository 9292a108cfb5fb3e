import cv2
import numpy as np
import yaml

from visionkit.data.synthetic import NAMES, generate_shapes, render_scene


def test_deterministic(tmp_path):
    a = generate_shapes(tmp_path / "a", n_train=3, n_val=1, size=40, verbose=False)
    b = generate_shapes(tmp_path / "b", n_train=3, n_val=1, size=40, verbose=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_every_task_view_is_consistent(shapes_root):
    data = yaml.safe_load((shapes_root / "data.yaml").read_text())
    assert list(data["names"].values()) == list(NAMES)
    for img_path in sorted((shapes_root / "images/train").glob("*.jpg")):
        stem = img_path.stem
        img = cv2.imread(str(img_path))
        mask = cv2.imread(str(shapes_root / "masks/train" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(shapes_root / "depth/train" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == depth.shape == img.shape[:2] and depth.dtype == np.uint16
        rows = [ln.split() for ln in (shapes_root / "labels/train" / f"{stem}.txt").read_text().splitlines()]
        classes = {int(r[0]) for r in rows}
        coords = np.array([float(v) for r in rows for v in r[1:]])
        assert coords.min() >= 0 and coords.max() <= 1
        # every visible class in the mask appears in the labels; background is 0
        assert set(np.unique(mask)) - {0} <= {c + 1 for c in classes}
        # depth: shapes are nearer (<= 2.6 m) than the background plane (>= 3.0 m) and all depths are valid
        assert depth.min() > 0 and depth[mask > 0].max() <= 2600 < 2800 <= depth[mask == 0].min()
        # the image-level class folder holds this image
        assert len(list((shapes_root / "classify/train").glob(f"*/{stem}.jpg"))) == 1


def test_shapes_never_overlap():
    for i in range(30):
        objs = render_scene(i, size=64)["objects"]
        for a in range(len(objs)):
            for b in range(a + 1, len(objs)):
                ca, cb = objs[a]["poly"].mean(0), objs[b]["poly"].mean(0)
                ra = np.linalg.norm(objs[a]["poly"] - ca, axis=1).max()
                rb = np.linalg.norm(objs[b]["poly"] - cb, axis=1).max()
                assert np.linalg.norm(ca - cb) > ra + rb - 1e-6


def test_primary_shape_is_largest_and_nearest():
    for i in range(20):
        s = render_scene(i, size=64)
        sizes = [np.ptp(o["poly"][:, 0]) for o in s["objects"]]
        assert s["primary"] == s["objects"][0]["cls"]
        assert sizes[0] == max(sizes) and s["objects"][0]["depth"] == min(o["depth"] for o in s["objects"])

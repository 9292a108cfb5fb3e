#!/usr/bin/env python
"""Benchmark: visionkit yolo-n-seg against Ultralytics yolo26n-seg.yaml, both trained from scratch side by side on
instance scenes whose objects have holes and come in pieces.

    python tools/bench_instance.py [--n-train 400] [--n-val 100] [--size 320] [--imgsz 320] [--epochs 10]
                                   [--batch 16] [--ul-model yolo26n-seg.yaml | --yolov8] [--out figures.json]

The data is generated here, deterministically per seed and without network: textured backgrounds and four classes
(ring, frame, star, bar) drawn in painter's order, so objects touch, a later object hides part of an earlier one
(a bar across a ring leaves it in two pieces) and rings and frames have holes. The ground truth is each object's
exact visible mask (COCO RLE at the image's size, iscrowd 0). The same images are written twice:

- visionkit's view: an object whose visible mask is one piece without a hole is a polygon row (its outline traced
  on pixel edges, pulled a quarter pixel inwards, so the row rasterises back to exactly its pixels; checked per
  object); any other object is a box row (the extent of its whole mask) with its exact mask in ``instances/``.
- Ultralytics' view: YOLO-seg polygon rows only, the outer outline of each object's largest visible piece. That is
  the best a polygon row can hold: a hole is filled and the other pieces are lost (and the row's box is the
  piece's, not the object's).

Both frameworks train on their view with the same epochs, batch, image size, CPU threads and workers. Ultralytics
(AGPL-3.0) is installed by tools/bench_detect.py's ``ensure_ultralytics`` into its own virtualenv
(.venv-ultralytics) and run as a separate process: it is never a dependency of visionkit. Both validate with
``save_json=True``; both result files are scored by one pycocotools evaluation each (``segm`` and ``bbox``) against
the one exact ground truth written by the generator. Prints parameters, GFLOPs, training images/s, wall time, box
and mask mAP50-95 / mAP50 from each framework's own validator and from the common pycocotools evaluation, the
visionkit/Ultralytics ratios, the ceiling of each label view (its own labels scored as perfect predictions), and
writes the figures as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detect import ensure_ultralytics, run_ultralytics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ("ring", "frame", "star", "bar")
GENERATOR = {"name": "bench-instance", "version": 1}
UL_SCRIPT = r"""
import json, sys, time
from ultralytics import YOLO
from ultralytics.utils.torch_utils import get_flops
a = json.loads(sys.argv[1])
model = YOLO(a["model"])
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], workers=a["workers"],
            device="cpu", plots=False, seed=0, amp=False, pretrained=False, project=a["project"], name="train",
            exist_ok=True, verbose=False, val=True, close_mosaic=a["close_mosaic"])
wall = time.perf_counter() - t0
best = YOLO(a["project"] + "/train/weights/best.pt")
params = sum(p.numel() for p in best.model.parameters())  # with the dataset's classes, like visionkit's
gflops = get_flops(best.model, a["imgsz"])
m = best.val(data=a["data"], imgsz=a["imgsz"], batch=a["batch"], device="cpu", save_json=True, plots=False,
             project=a["project"], name="val", exist_ok=True, conf=0.001, iou=0.7, verbose=False)
print("BENCH_RESULT " + json.dumps({"params": params, "gflops": gflops, "wall": wall, "box_map": m.box.map,
                                    "box_map50": m.box.map50, "mask_map": m.seg.map, "mask_map50": m.seg.map50,
                                    "predictions": a["project"] + "/val/predictions.json"}))
"""


# --- the scenes ------------------------------------------------------------------------------------------------------
def _circle(cx: float, cy: float, r: float, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _square(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    t = np.arange(4) * math.pi / 2 + math.pi / 4 + angle
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _star(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    t = np.arange(10) * math.pi / 5 - math.pi / 2 + angle
    radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)


def _bar(cx: float, cy: float, half_len: float, half_wid: float, angle: float) -> np.ndarray:
    u = np.array([math.cos(angle), math.sin(angle)])
    v = np.array([-u[1], u[0]])
    corners = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
    return np.array([[cx, cy] + a * half_len * u + b * half_wid * v for a, b in corners])


def shape_mask(cls: int, cx: float, cy: float, r: float, angle: float, inner: float, size: int) -> np.ndarray:
    """The full (unoccluded) bool mask of an object: ring (annulus), frame (square with a square hole), star, bar
    (``r`` = half its length, ``inner`` × ``r`` = half its width)."""
    from visionkit.data.instances import polygon_mask

    if cls == 0:
        return polygon_mask(_circle(cx, cy, r), size, size) & ~polygon_mask(_circle(cx, cy, inner * r), size, size)
    if cls == 1:
        outer = polygon_mask(_square(cx, cy, r, angle), size, size)
        return outer & ~polygon_mask(_square(cx, cy, inner * r, angle), size, size)
    if cls == 2:
        return polygon_mask(_star(cx, cy, r, angle), size, size)
    return polygon_mask(_bar(cx, cy, r, inner * r, angle), size, size)


def render_scene(index: int, seed: int, size: int) -> dict:
    """Scene ``index``: image (H, W, 3 BGR uint8) and objects [{cls, mask}] with their visible masks, drawn in
    painter's order (a later object hides what it covers of the earlier ones). An object that ends up with under
    a fifth of its pixels (or under 40 px) visible is left out of the scene, so every labelled object can be
    seen and nothing visible is unlabelled."""
    from visionkit.data.synthetic import _texture

    rng = np.random.default_rng([seed, index, 7])
    img = _texture(rng, size)
    n = int(rng.integers(3, 8))
    shapes = []
    for _ in range(n):
        cls = int(rng.integers(len(NAMES)))
        if cls == 3:
            r, inner = size * rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.16)
        else:
            r = size * (rng.uniform(0.08, 0.18) if cls == 2 else rng.uniform(0.09, 0.2))
            inner = rng.uniform(0.45, 0.65) if cls == 0 else rng.uniform(0.4, 0.6)
        if shapes and rng.random() < 0.65:  # next to (touching or across) an earlier object
            near = shapes[int(rng.integers(len(shapes)))]
            t = rng.uniform(0, 2 * math.pi)
            d = (near["r"] + r) * rng.uniform(0.35, 1.0)
            cx, cy = near["cx"] + d * math.cos(t), near["cy"] + d * math.sin(t)
        else:
            cx, cy = rng.uniform(0.5 * r, size - 0.5 * r, size=2)
        cx, cy = float(np.clip(cx, 0.3 * r, size - 0.3 * r)), float(np.clip(cy, 0.3 * r, size - 0.3 * r))
        colour = rng.uniform(0, 255, size=3)
        colour[rng.integers(3)] = rng.choice([0.0, 255.0])  # saturated, so objects stand out from the texture
        angle = rng.uniform(0, 2 * math.pi)
        full = shape_mask(cls, cx, cy, r, angle, inner, size)
        shapes.append({"cls": cls, "cx": cx, "cy": cy, "r": r, "full": full, "colour": colour, "angle": angle})
    shapes = [s for s in shapes if s["full"].any()]
    while True:  # leave out the most hidden object until every one is visible enough
        covered = np.zeros((size, size), bool)
        for s in reversed(shapes):
            s["visible"] = s["full"] & ~covered
            covered |= s["full"]
        shares = [s["visible"].sum() / max(1, s["full"].sum()) for s in shapes]
        worst = int(np.argmin(shares)) if shapes else -1
        if worst < 0 or (shares[worst] >= 0.2 and shapes[worst]["visible"].sum() >= 40):
            break
        shapes.pop(worst)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for s in shapes:
        m = s["full"]
        shade = 0.8 + 0.2 * np.cos((xx[m] - s["cx"]) * math.cos(s["angle"]) / size * 4)  # a soft light gradient
        fill = s["colour"][None] * shade[:, None] + rng.normal(0, 5, size=(int(m.sum()), 3))
        img[m] = np.clip(fill, 0, 255)
    image = cv2.GaussianBlur(img.astype(np.uint8), (3, 3), 0)  # soften aliased edges like a camera would
    return {"image": image, "objects": [{"cls": s["cls"], "mask": s["visible"]} for s in shapes]}


def outlines(mask: np.ndarray) -> list[np.ndarray]:
    """The outer outline of each 8-connected piece of ``mask`` as a polygon (K, 2) in continuous pixel coordinates
    (pixel i spans [i, i+1)), largest piece first. Traced on the pixel grid doubled, each vertex is a quarter pixel
    inside the piece's pixel edges: rasterised, the polygon covers exactly the piece with its holes filled."""
    big = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [(c.reshape(-1, 2).astype(np.float64) + 0.5) / 2 for c in contours]
    areas = [abs(cv2.contourArea(p.astype(np.float32))) for p in polys]
    return [polys[i] for i in np.argsort(areas, kind="stable")[::-1]]


def polygon_row(cls: int, poly: np.ndarray, size: int) -> tuple[str, np.ndarray]:
    """A YOLO-seg row and the normalised coordinates it holds (6 decimals, as written)."""
    coords = np.round(np.clip(poly / size, 0, 1), 6)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in coords.reshape(-1)), coords


def generate(root: Path, n_train: int, n_val: int, size: int, seed: int) -> dict:
    """Write both views and the exact ground truth of the val split under ``root``; returns counts of the objects
    (all, polygon rows, exact masks, with a hole, in pieces)."""
    from pycocotools import mask as mask_utils

    from visionkit.data.instances import mask_box_row, polygon_mask, write_instances
    from visionkit.data.output import atomic_dir
    from visionkit.data.synthetic import _link_or_copy

    stamp = {**GENERATOR, "n_train": n_train, "n_val": n_val, "size": size, "seed": seed}
    done = root / "stats.json"
    if done.is_file() and json.loads(done.read_text()).get("generator") == stamp:
        return json.loads(done.read_text())
    stats = {"generator": stamp, "objects": 0, "polygon_rows": 0, "exact_masks": 0, "holes": 0, "pieces": 0}
    with atomic_dir(root, exist_ok=True, written_by="tools/bench_instance.py") as tmp:
        gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(NAMES)]}
        index = 0
        for split, count in (("train", n_train), ("val", n_val)):
            for sub in ("visionkit/images", "visionkit/labels", "ultralytics/images", "ultralytics/labels"):
                (tmp / sub / split).mkdir(parents=True)
            for _ in range(count):
                scene = render_scene(index, seed, size)
                stem = f"{index:05d}"
                image_path = tmp / "visionkit" / "images" / split / f"{stem}.jpg"
                cv2.imwrite(str(image_path), scene["image"], [cv2.IMWRITE_JPEG_QUALITY, 92])
                _link_or_copy(image_path, tmp / "ultralytics" / "images" / split / f"{stem}.jpg")
                vk_rows, ul_rows, exact = [], [], {}
                for line, obj in enumerate(scene["objects"], start=1):
                    m, cls = obj["mask"], obj["cls"]
                    polys = outlines(m)
                    row, coords = polygon_row(cls, polys[0], size)
                    ul_rows.append(row)
                    filled = polygon_mask(coords.reshape(-1, 2) * size, size, size)
                    holed = bool((filled & ~m).any())
                    stats["objects"] += 1
                    stats["holes"] += holed
                    stats["pieces"] += len(polys) > 1
                    if len(polys) == 1 and np.array_equal(filled, m):
                        vk_rows.append(row)
                        stats["polygon_rows"] += 1
                    else:  # a hole, several pieces (or an outline that does not rasterise back exactly)
                        vk_rows.append(f"{cls} " + " ".join(f"{v:.6f}" for v in mask_box_row(m)))
                        exact[line] = m
                        stats["exact_masks"] += 1
                    if split == "val":
                        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                        gt["annotations"].append(
                            {
                                "id": len(gt["annotations"]) + 1,
                                "image_id": len(gt["images"]) + 1,
                                "category_id": cls,
                                "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
                                "area": float(mask_utils.area(rle)),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                                "iscrowd": 0,
                            }
                        )
                if split == "val":
                    gt["images"].append({"id": len(gt["images"]) + 1, "width": size, "height": size, "file_name": stem})
                for view, rows in (("visionkit", vk_rows), ("ultralytics", ul_rows)):
                    (tmp / view / "labels" / split / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))
                write_instances(tmp / "visionkit" / "instances" / split / f"{stem}.json", size, size, exact)
                index += 1
        (tmp / "ground_truth_val_coco.json").write_text(json.dumps(gt))
        for view, path in (("visionkit", "."), ("ultralytics", str((root / "ultralytics").resolve()))):
            spec = {"path": path, "train": "images/train", "val": "images/val", "names": dict(enumerate(NAMES))}
            (tmp / view / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


# --- scoring ---------------------------------------------------------------------------------------------------------
def coco_maps(gt: dict, results: list[dict]) -> dict[str, float]:
    """One pycocotools evaluation per iouType. loadRes takes a result's bbox over its segmentation when it has
    both, so the segm evaluation gets the results without their boxes."""
    from visionkit.tasks.detect.metrics import coco_eval

    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    masks = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    box, mask = coco_eval(gt, boxes, "bbox").stats, coco_eval(gt, masks, "segm").stats
    return {"box": float(box[0]), "box50": float(box[1]), "mask": float(mask[0]), "mask50": float(mask[1])}


def label_ceiling(gt: dict, labels: Path, size: int) -> dict[str, float]:
    """The labels of a view scored as if a model had predicted them exactly (score 1): what the view can teach at
    best. Polygon rows are rasterised with visionkit's rule; exact masks are read from instances/."""
    from pycocotools import mask as mask_utils

    from visionkit.data.instances import image_objects

    results = []
    for im in gt["images"]:
        image = labels / "images" / "val" / f"{im['file_name']}.jpg"
        objects = image_objects(image, (size, size), len(NAMES))
        for cls, rle in zip(objects.classes.tolist(), objects.rles):
            counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            results.append(
                {
                    "image_id": im["id"],
                    "category_id": int(cls),
                    "score": 1.0,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "segmentation": {"size": list(rle["size"]), "counts": counts},
                }
            )
    return coco_maps(gt, results)


def train_visionkit(data: str, a, project: str) -> dict:
    from visionkit import Model

    model = Model("yolo-n-seg")
    common = {"imgsz": a.imgsz, "batch": a.batch, "workers": a.workers, "threads": a.threads, "project": project}
    t0 = time.perf_counter()
    model.train(
        data=data,
        epochs=a.epochs,
        close_mosaic=a.close_mosaic,
        plots=False,
        verbose=False,
        seed=0,
        patience=0,
        **common,
    )
    wall = time.perf_counter() - t0
    metrics = model.val(data=data, plots=False, verbose=False, save_json=True, **common)
    info = model.info(imgsz=a.imgsz, verbose=False)
    return {
        "params": info["params"],
        "gflops": info["flops"] / 1e9,
        "wall": wall,
        "box_map": metrics["box_mAP50-95"],
        "box_map50": metrics["box_mAP50"],
        "mask_map": metrics["mask_mAP50-95"],
        "mask_map50": metrics["mask_mAP50"],
        "val_dir": str(model.save_dir),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(REPO / "datasets" / "bench_instance"), help="where the data is written")
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--size", type=int, default=320, help="generated image size (pixels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ul-model", default="yolo26n-seg.yaml", help="the Ultralytics model built from scratch")
    ap.add_argument("--yolov8", action="store_true", help="Ultralytics yolov8n-seg.yaml instead of yolo26n-seg")
    ap.add_argument("--venv", default=str(REPO / ".venv-ultralytics"))
    ap.add_argument("--out", default=None, help="the figures as JSON (default: in the work dir)")
    a = ap.parse_args()
    ul_model = "yolov8n-seg.yaml" if a.yolov8 else a.ul_model

    import torch

    torch.set_num_threads(a.threads)
    root = Path(a.root)
    t0 = time.perf_counter()
    stats = generate(root, a.n_train, a.n_val, a.size, a.seed)
    print(
        f"data {root}: {a.n_train} train + {a.n_val} val scenes ({a.size} px) in {time.perf_counter() - t0:.0f} s; "
        f"{stats['objects']} objects: {stats['polygon_rows']} polygon rows, {stats['exact_masks']} exact masks "
        f"({stats['holes']} with a hole, {stats['pieces']} in pieces)"
    )
    gt = json.loads((root / "ground_truth_val_coco.json").read_text())
    ceilings = {view: label_ceiling(gt, root / view, a.size) for view in ("visionkit", "ultralytics")}
    work = Path(tempfile.mkdtemp(prefix="vk-bench-instance-"))
    py = ensure_ultralytics(Path(a.venv))
    print(
        f"imgsz {a.imgsz}, epochs {a.epochs}, batch {a.batch}, {a.threads} threads, {a.workers} workers; "
        f"Ultralytics {ul_model}; work dir {work}"
    )

    vk = train_visionkit(str(root / "visionkit" / "data.yaml"), a, str(work / "visionkit"))
    print(f"visionkit done in {vk['wall']:.0f} s")
    ul = run_ultralytics(py, UL_SCRIPT, ul_model, str(root / "ultralytics" / "data.yaml"), a, work)

    # both models' results against the one exact ground truth of the generator
    def key(stem) -> str:  # Ultralytics turns numeric file stems into integers ("00480" → 480)
        return str(int(stem)) if str(stem).isdigit() else str(stem)

    stem_to_id = {key(im["file_name"]): im["id"] for im in gt["images"]}
    vk_dir = Path(vk["val_dir"])
    vk_gt = json.loads((vk_dir / "ground_truth_coco.json").read_text())
    vk_ids = {im["id"]: stem_to_id[key(Path(im["file_name"]).stem)] for im in vk_gt["images"]}
    vk_res = [
        {**d, "image_id": vk_ids[d["image_id"]]} for d in json.loads((vk_dir / "predictions_coco.json").read_text())
    ]
    # outside COCO itself, Ultralytics writes category_id = class index + 1
    ul_res = [
        {**d, "image_id": stem_to_id[key(d["image_id"])], "category_id": d["category_id"] - 1}
        for d in json.loads(Path(ul["predictions"]).read_text())
        if key(d["image_id"]) in stem_to_id
    ]
    vk_coco, ul_coco = coco_maps(gt, vk_res), coco_maps(gt, ul_res)
    # visionkit's validator read the same masks from its view (polygon rows + instances/): same pixels, same ids?
    ours = {(a_["image_id"], a_["segmentation"]["counts"]) for a_ in gt["annotations"]}
    theirs = {(vk_ids[a_["image_id"]], a_["segmentation"]["counts"]) for a_ in vk_gt["annotations"]}
    gt_same = f"{len(ours & theirs)}/{len(ours)} masks identical, {len(theirs - ours)} others"

    n_train = a.n_train
    rows = [
        ("parameters", vk["params"], ul["params"], "{:,.0f}"),
        ("GFLOPs", vk["gflops"], ul["gflops"], "{:.2f}"),
        ("train images/s", a.epochs * n_train / vk["wall"], a.epochs * n_train / ul["wall"], "{:.2f}"),
        ("wall time (s)", vk["wall"], ul["wall"], "{:.0f}"),
        ("box mAP50-95 (own validator)", vk["box_map"], ul["box_map"], "{:.4f}"),
        ("box mAP50 (own validator)", vk["box_map50"], ul["box_map50"], "{:.4f}"),
        ("mask mAP50-95 (own validator)", vk["mask_map"], ul["mask_map"], "{:.4f}"),
        ("mask mAP50 (own validator)", vk["mask_map50"], ul["mask_map50"], "{:.4f}"),
        ("box mAP50-95 (pycocotools)", vk_coco["box"], ul_coco["box"], "{:.4f}"),
        ("box mAP50 (pycocotools)", vk_coco["box50"], ul_coco["box50"], "{:.4f}"),
        ("mask mAP50-95 (pycocotools)", vk_coco["mask"], ul_coco["mask"], "{:.4f}"),
        ("mask mAP50 (pycocotools)", vk_coco["mask50"], ul_coco["mask50"], "{:.4f}"),
        ("labels' mask mAP50-95 ceiling", ceilings["visionkit"]["mask"], ceilings["ultralytics"]["mask"], "{:.4f}"),
        ("labels' box mAP50-95 ceiling", ceilings["visionkit"]["box"], ceilings["ultralytics"]["box"], "{:.4f}"),
    ]
    ul_name = f"Ultralytics {ul_model.replace('.yaml', '')}"
    print(f"\n{'':<31} {'visionkit yolo-n-seg':>20} {ul_name:>24} {'ratio vk/UL':>12}")
    table = {}
    for name, v, u, fmt in rows:
        ratio = v / u if u else float("nan")
        table[name] = {"visionkit": v, "ultralytics": u, "ratio": ratio}
        print(f"{name:<31} {fmt.format(v):>20} {fmt.format(u):>24} {ratio:>12.3f}")
    mask_ratio = vk_coco["mask"] / max(ul_coco["mask"], 1e-9)
    speed_ratio = ul["wall"] / vk["wall"]
    print(
        f"\ntargets: mask mAP50-95 (pycocotools) ≥ 1.3× Ultralytics: {mask_ratio:.3f} "
        f"({'met' if mask_ratio >= 1.3 else 'NOT met'}); train images/s ≥ Ultralytics': {speed_ratio:.3f} "
        f"({'met' if speed_ratio >= 1.0 else 'NOT met'})\nground truth read by visionkit's validator vs the "
        f"generator's: {gt_same}"
    )
    out = Path(a.out) if a.out else work / "bench_instance.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "settings": {**vars(a), "ul_model": ul_model, "n_train": n_train},
                "data": stats,
                "figures": table,
                "targets": {"mask_map_ratio": mask_ratio, "train_speed_ratio": speed_ratio},
                "ground_truth_check": gt_same,
                "visionkit_val_dir": vk["val_dir"],
                "ultralytics_predictions": ul["predictions"],
            },
            indent=1,
        )
    )
    print(f"figures: {out}")


if __name__ == "__main__":
    main()

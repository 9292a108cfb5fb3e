"""``visionkit data stats``: instances per class and split, box sizes, and a mosaic of labelled samples."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from visionkit.data.format import load_data_yaml, read_label_file, row_to_box, sidecar_path, split_images

PALETTE = np.array(
    [
        [56, 56, 255],
        [151, 157, 255],
        [31, 112, 255],
        [29, 178, 255],
        [49, 210, 207],
        [10, 249, 72],
        [23, 204, 146],
        [134, 219, 61],
        [52, 147, 26],
        [187, 212, 0],
        [168, 153, 44],
        [255, 194, 0],
        [147, 69, 52],
        [255, 115, 100],
        [236, 24, 0],
        [255, 56, 132],
    ],
    dtype=np.uint8,
)


def dataset_stats(data: str | Path, out: str | Path, samples: int = 16, verbose: bool = True) -> dict:
    """Counts per class and split, a box-size histogram (PNG) and a mosaic of samples with labels drawn (PNG)."""
    spec = load_data_yaml(data)
    names = spec.get("names") or []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_split: dict[str, Counter] = defaultdict(Counter)
    images_per_split: Counter = Counter()
    sizes: list[float] = []
    shown: list[Path] = []
    for split in ("train", "val", "test"):
        if spec.get(split) is None:
            continue
        files = split_images(spec, split)
        images_per_split[split] = len(files)
        for f in files:
            for cls, coords in read_label_file(sidecar_path(f), len(names) or None):
                per_split[split][cls] += 1
                _, _, w, h = row_to_box(coords)
                sizes.append(float(np.sqrt(max(w * h, 0))))
        step = max(1, len(files) // max(1, samples // 2))
        shown += files[::step][: samples // 2]
    shown = shown[:samples]
    result = {
        "images": dict(images_per_split),
        "instances": {
            s: {names[c] if c < len(names) else str(c): n for c, n in sorted(cnt.items())}
            for s, cnt in per_split.items()
        },
        "box_sizes": _size_bins(sizes),
    }
    result["histogram"] = str(_plot_sizes(sizes, out / "box_sizes.png")) if sizes else None
    result["mosaic"] = str(_mosaic(shown, names, spec, out / "mosaic.png")) if shown else None
    if verbose:
        print(format_stats(result, names))
    return result


def _size_bins(sizes: list[float]) -> dict[str, int]:
    """Objects by sqrt(relative area): tiny < 0.05 ≤ small < 0.15 ≤ medium < 0.4 ≤ large."""
    bins = Counter()
    for s in sizes:
        bins[
            "tiny (<5%)"
            if s < 0.05
            else "small (5-15%)"
            if s < 0.15
            else "medium (15-40%)"
            if s < 0.4
            else "large (>=40%)"
        ] += 1
    return dict(bins)


def _plot_sizes(sizes: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(sizes, bins=30, range=(0, 1), color="tab:blue")
    ax.set(xlabel="box size: sqrt(w·h) / image", ylabel="objects", title="box sizes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _mosaic(files: list[Path], names: list[str], spec: dict, path: Path, tile: int = 256) -> Path:
    tiles = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        mask_file = sidecar_path(f, "masks")
        if mask_file.is_file():
            mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
            if mask is not None and mask.shape == (h, w):
                colour = PALETTE[(mask.astype(int) - 1) % len(PALETTE)]
                on = (mask > 0) & (mask != 255)
                img[on] = (0.5 * img[on] + 0.5 * colour[on]).astype(np.uint8)
        for cls, coords in read_label_file(sidecar_path(f), None):
            c = tuple(int(v) for v in PALETTE[cls % len(PALETTE)])
            if len(coords) > 4:
                pts = (np.asarray(coords).reshape(-1, 2) * [w, h]).astype(np.int32)
                cv2.polylines(img, [pts], True, c, 2)
            cx, cy, bw, bh = row_to_box(coords)
            p1 = (int((cx - bw / 2) * w), int((cy - bh / 2) * h))
            cv2.rectangle(img, p1, (int((cx + bw / 2) * w), int((cy + bh / 2) * h)), c, 1 if len(coords) > 4 else 2)
            label = names[cls] if cls < len(names) else str(cls)
            cv2.putText(img, label, (p1[0], max(12, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1)
        scale = tile / max(h, w)
        img = cv2.resize(img, (int(w * scale), int(h * scale)))
        canvas = np.full((tile, tile, 3), 114, np.uint8)
        canvas[: img.shape[0], : img.shape[1]] = img
        cv2.putText(canvas, f.name[:30], (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(canvas)
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    grid = np.full((rows * tile, cols * tile, 3), 114, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = t
    cv2.imwrite(str(path), grid)
    return path


def format_stats(result: dict, names: list[str]) -> str:
    splits = list(result["images"])
    lines = [f"{'class':<20}" + "".join(f"{s:>10}" for s in splits)]
    lines.append(f"{'images':<20}" + "".join(f"{result['images'][s]:>10}" for s in splits))
    for name in names:
        lines.append(f"{name:<20}" + "".join(f"{result['instances'].get(s, {}).get(name, 0):>10}" for s in splits))
    lines.append("box sizes: " + ", ".join(f"{k} {v}" for k, v in result["box_sizes"].items()))
    if result["mosaic"]:
        lines.append(f"mosaic: {result['mosaic']}   histogram: {result['histogram']}")
    return "\n".join(lines)

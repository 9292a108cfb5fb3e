"""``visionkit data stats``: instances per class and split (with how many have an exact mask, and the crowd regions),
box sizes, and a mosaic of labelled samples (exact masks drawn in their class colour)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from visionkit.data.format import load_data_yaml, read_label_file, row_to_box, sidecar_path, split_images
from visionkit.data.instances import decode, instances_path, read_instances

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
    exact_masks: Counter = Counter()  # objects (label rows) whose exact mask is in instances/
    crowd: Counter = Counter()  # crowd (ignore) regions in instances/
    for split in ("train", "val", "test"):
        if spec.get(split) is None:
            continue
        files = split_images(spec, split)
        images_per_split[split] = len(files)
        for f in files:
            rows = read_label_file(sidecar_path(f), len(names) or None)
            for cls, coords in rows:
                per_split[split][cls] += 1
                _, _, w, h = row_to_box(coords)
                sizes.append(float(np.sqrt(max(w * h, 0))))
            sidecar = instances_path(f)
            if sidecar.is_file():  # `data check` validates these files; here they are only counted
                exact = read_instances(sidecar, len(names) or None)
                exact_masks[split] += sum(1 for line in exact.objects if line <= len(rows))
                crowd[split] += len(exact.crowd)
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
        "exact_masks": {s: exact_masks[s] for s in images_per_split if exact_masks[s]},
        "crowd_regions": {s: crowd[s] for s in images_per_split if crowd[s]},
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
        exact = _readable_instances(f, (w, h))
        for line, (cls, coords) in enumerate(read_label_file(sidecar_path(f), None), 1):
            c = tuple(int(v) for v in PALETTE[cls % len(PALETTE)])
            if line in exact:  # the exact mask's outline: holes and every piece
                outline, _ = cv2.findContours(exact[line], cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(img, outline, -1, c, 2)
            elif len(coords) > 4:
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


def _readable_instances(image: Path, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """The exact masks (uint8) of an image by label line, for drawing; {} when there is no instance file, or one
    that does not fit the image (`data check` reports those)."""
    path = instances_path(image)
    if not path.is_file():
        return {}
    w, h = size
    try:
        exact = read_instances(path)
        if (exact.width, exact.height) != (w, h):
            return {}
        return {line: decode(counts, h, w).astype(np.uint8) for line, counts in exact.objects.items()}
    except Exception:  # a drawing aid only: never fail the statistics over it
        return {}


def format_stats(result: dict, names: list[str]) -> str:
    splits = list(result["images"])
    lines = [f"{'class':<20}" + "".join(f"{s:>10}" for s in splits)]
    lines.append(f"{'images':<20}" + "".join(f"{result['images'][s]:>10}" for s in splits))
    for name in names:
        lines.append(f"{name:<20}" + "".join(f"{result['instances'].get(s, {}).get(name, 0):>10}" for s in splits))
    if result.get("exact_masks") or result.get("crowd_regions"):
        lines.append(f"{'  with exact mask':<20}" + "".join(f"{result['exact_masks'].get(s, 0):>10}" for s in splits))
        lines.append(f"{'crowd regions':<20}" + "".join(f"{result['crowd_regions'].get(s, 0):>10}" for s in splits))
    lines.append("box sizes: " + ", ".join(f"{k} {v}" for k, v in result["box_sizes"].items()))
    if result["mosaic"]:
        lines.append(f"mosaic: {result['mosaic']}   histogram: {result['histogram']}")
    return "\n".join(lines)

"""LIME for images (Ribeiro, Singh, Guestrin 2016, "Why should I trust you?"), written from the paper: the image is
cut into superpixels (SLIC, Achanta et al. 2012), copies of it with random superpixels switched off are scored by
the model, and a weighted ridge regression on the on/off vectors, each copy weighted by how close it is to the
whole image, says how much each superpixel adds to the score. Nothing here knows a model or a task: the caller
passes ``score_fn``, a batch of BGR images → their scores."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from visionkit.explain.overlay import as_bgr

KERNEL_WIDTH = 0.25  # σ of the exponential kernel on the cosine distance (the width of the paper's image setting)
RIDGE_ALPHA = 1.0  # L2 penalty of the weighted ridge regression
COMPACTNESS = 10.0  # SLIC's m: colour against space (Lab units per grid interval); the paper's range is 1-40
SLIC_ITERATIONS = 10  # the SLIC paper finds 10 enough for most images
BATCH = 32  # perturbed copies per forward pass at most
BATCH_BYTES = 256 << 20  # ... and at most this much image data in one batch (large photos get smaller batches)
FILLS = ("mean", "blur")  # what an "off" superpixel shows: the image's mean colour, or a strong blur of itself


# -- superpixels ----------------------------------------------------------------------------------------------------
def _lowest_gradient(lab: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each seed moved to the lowest colour gradient in its 3×3 neighbourhood, so that none starts on an edge."""
    h, w = lab.shape[:2]
    padded = np.pad(lab, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = ((padded[1:-1, 2:] - padded[1:-1, :-2]) ** 2).sum(-1)
    gy = ((padded[2:, 1:-1] - padded[:-2, 1:-1]) ** 2).sum(-1)
    grad = np.pad(gx + gy, 1, constant_values=np.inf)  # outside the image never wins
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    iy, ix = np.round(cy).astype(int), np.round(cx).astype(int)
    values = np.stack([grad[iy + 1 + dy, ix + 1 + dx] for dy, dx in offsets], 1)
    best = values.argmin(1)
    dy = np.array([o[0] for o in offsets])[best]
    dx = np.array([o[1] for o in offsets])[best]
    return np.clip(iy + dy, 0, h - 1).astype(float), np.clip(ix + dx, 0, w - 1).astype(float)


def _fill_orphans(labels: np.ndarray, lab: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Each stray piece (pixels labelled -2, -3, ...: one number per piece; -1: never labelled, its 4-connected
    pieces are found here) joins the neighbouring label whose mean colour (``colours``, Lab per label) is closest to
    the piece's own: a stray piece goes to the side of an edge it looks like. Every label stays one connected
    piece."""
    orphan = labels < 0
    if not orphan.any():
        return labels
    if orphan.all():
        return np.zeros_like(labels)
    piece = np.where(labels <= -2, -labels - 1, 0)  # 0: labelled; 1, 2, ...: the stray pieces
    _, found = cv2.connectedComponents((labels == -1).astype(np.uint8), connectivity=4)
    piece = np.where(found > 0, found + piece.max(), piece)
    n = int(piece.max()) + 1
    ids = piece.ravel()
    inside = ids > 0
    counts = np.bincount(ids[inside], minlength=n).astype(np.float64)
    flat_lab = lab.reshape(-1, 3)
    sums = np.stack([np.bincount(ids[inside], flat_lab[inside, c], n) for c in range(3)], 1)
    means = sums / np.maximum(counts, 1)[:, None]
    pieces, neighbours = [], []
    for mine, theirs in (
        (piece[:, :-1], labels[:, 1:]),
        (piece[:, 1:], labels[:, :-1]),
        (piece[:-1], labels[1:]),
        (piece[1:], labels[:-1]),
    ):
        touching = (mine > 0) & (theirs >= 0)
        pieces.append(mine[touching])
        neighbours.append(theirs[touching])
    p, q = np.concatenate(pieces), np.concatenate(neighbours)
    cost = ((means[p] - colours[q]) ** 2).sum(1)
    order = np.lexsort((cost, p))  # by piece, cheapest neighbour first
    first = order[np.r_[True, p[order][1:] != p[order][:-1]]]
    choice = np.zeros(n, np.int64)
    choice[p[first]] = q[first]
    return np.where(orphan, choice[piece], labels)


def slic(
    image: np.ndarray, n_segments: int = 50, compactness: float = COMPACTNESS, iterations: int = SLIC_ITERATIONS
) -> np.ndarray:
    """SLIC superpixels of a BGR (or grey) uint8 image: k-means on (L, a, b, y, x) with each centre searching only a
    2S×2S window around itself (S = the grid interval, sqrt(pixels / n_segments)), the distance
    sqrt(d_lab² + (d_xy / S)² · m²). The image is smoothed a little first (sensor noise would scatter the labels).
    Then connectivity is enforced: each label keeps its largest 4-connected piece, the other pieces and segments
    under a quarter of the average size join the neighbour closest in colour. Returns (H, W) int32 labels 0..K-1
    (K is near ``n_segments``, not exactly it)."""
    img = cv2.GaussianBlur(as_bgr(np.ascontiguousarray(image)), (0, 0), 1.0)
    h, w = img.shape[:2]
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)  # L 0..100, a and b about -127..127
    k = int(max(1, min(n_segments, h * w)))
    step = math.sqrt(h * w / k)
    rows, cols = max(1, round(h / step)), max(1, round(w / step))
    cy, cx = np.meshgrid((np.arange(rows) + 0.5) * h / rows, (np.arange(cols) + 0.5) * w / cols, indexing="ij")
    cy, cx = _lowest_gradient(lab, cy.ravel(), cx.ravel())
    centres = np.concatenate([lab[cy.astype(int), cx.astype(int)], cy[:, None], cx[:, None]], 1)  # (K, 5)
    s = math.sqrt(h * w / len(centres))
    spatial = np.float32((compactness / s) ** 2)
    window = int(math.ceil(s))
    flat_lab = lab.reshape(-1, 3).astype(np.float64)
    yy, xx = np.divmod(np.arange(h * w), w)
    labels = np.full((h, w), -1, np.int64)
    dist = np.empty((h, w), np.float32)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(iterations):
        dist.fill(np.inf)
        labels.fill(-1)
        boxes = []
        for i, (L, a, b, y, x) in enumerate(centres):
            y0, y1 = max(0, int(y) - window), min(h, int(y) + window + 1)
            x0, x1 = max(0, int(x) - window), min(w, int(x) + window + 1)
            boxes.append((y0, y1, x0, x1))
            patch = lab[y0:y1, x0:x1]
            dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(y))[:, None]
            dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(x))[None, :]
            d = ((patch - np.array((L, a, b), np.float32)) ** 2).sum(-1) + (dy * dy + dx * dx) * spatial
            closer = d < dist[y0:y1, x0:x1]
            dist[y0:y1, x0:x1][closer] = d[closer]
            labels[y0:y1, x0:x1][closer] = i
        flat = labels.ravel()
        ok = flat >= 0
        mine = flat[ok]
        counts = np.bincount(mine, minlength=len(centres)).astype(np.float64)
        sums = [np.bincount(mine, flat_lab[ok, c], len(centres)) for c in range(3)]
        sums += [np.bincount(mine, yy[ok], len(centres)), np.bincount(mine, xx[ok], len(centres))]
        alive = counts > 0  # a centre that won no pixel stays where it was
        centres[alive] = np.stack(sums, 1)[alive] / counts[alive, None]
    return _connected(labels, boxes, max(1, (h * w) // (4 * len(centres))), lab, centres[:, :3].astype(np.float32))


def _connected(
    labels: np.ndarray, boxes: list[tuple[int, int, int, int]], min_size: int, lab: np.ndarray, colours: np.ndarray
) -> np.ndarray:
    """Each label's largest 4-connected piece kept (if at least ``min_size`` pixels), the rest merged into the
    neighbour closest in colour; labels renumbered 0..K-1. A label's pixels all lie in its centre's last search
    window (``boxes``)."""
    out = np.where(labels < 0, -1, 0).astype(np.int64)
    stray = 1  # stray pieces are numbered -2, -3, ... so that two of different labels never join
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        mine = labels[y0:y1, x0:x1] == i
        if not mine.any():
            continue
        count, pieces, stats, _ = cv2.connectedComponentsWithStats(mine.astype(np.uint8), connectivity=4)
        biggest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        keep = pieces == biggest if stats[biggest, cv2.CC_STAT_AREA] >= min_size else np.zeros_like(mine)
        out[y0:y1, x0:x1][mine] = np.where(keep, i, -(stray + pieces))[mine]
        stray += count
    _, renumbered = np.unique(_fill_orphans(out, lab, colours), return_inverse=True)
    return renumbered.reshape(labels.shape).astype(np.int32)


# -- sampling, scoring, regression -----------------------------------------------------------------------------------
def sample_masks(rng: np.random.Generator, samples: int, features: int) -> np.ndarray:
    """(samples, features) on/off vectors around the whole image (the paper's sampling: how many superpixels stay on
    is drawn uniformly from 1..features, then which ones, uniformly). Row 0 is the whole image, all on."""
    masks = np.ones((samples, features), bool)
    if samples > 1:
        keep = rng.integers(1, features + 1, size=samples - 1)
        rank = rng.random((samples - 1, features)).argsort(1).argsort(1)  # a random order of the superpixels
        masks[1:] = rank < keep[:, None]
    return masks


def kernel_weights(masks: np.ndarray, width: float = KERNEL_WIDTH) -> np.ndarray:
    """exp(-D² / σ²) with D the cosine distance of each on/off vector to the all-on one: 1 - sqrt(on / features)."""
    distance = 1.0 - np.sqrt(masks.sum(1) / masks.shape[1])
    return np.exp(-(distance**2) / width**2)


def fill_image(image: np.ndarray, fill: str) -> np.ndarray:
    """What an "off" superpixel shows: the image's mean colour everywhere, or the image blurred beyond recognition."""
    if fill == "blur":
        sigma = max(image.shape[:2]) / 16
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.broadcast_to(image.reshape(-1, image.shape[2]).mean(0).round().astype(np.uint8), image.shape)


def perturb(image: np.ndarray, segments: np.ndarray, masks: np.ndarray, filler: np.ndarray) -> list[np.ndarray]:
    """One copy of ``image`` per on/off vector, its "off" superpixels replaced by ``filler``'s pixels."""
    return [np.where(m[segments][..., None], image, filler) for m in masks]


def weighted_ridge(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float = RIDGE_ALPHA
) -> tuple[np.ndarray, float, float]:
    """argmin_b Σ w_i (y_i - c - x_i·b)² + alpha·|b|² (the intercept c unpenalised). Returns (b, c, the weighted R²
    of the fit: how well a linear model of the superpixels explains the scores near the image; 0 for constant
    scores)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    total = weights.sum()
    x_mean, y_mean = weights @ x / total, float(weights @ y / total)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ (xc * weights[:, None]) + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (weights * yc))
    intercept = y_mean - float(x_mean @ coef)
    spread = float(weights @ yc**2)
    fit = 1.0 - float(weights @ (y - x @ coef - intercept) ** 2) / spread if spread > 0 else 0.0
    return coef, intercept, fit


@dataclass
class LimeResult:
    """One target's explanation: ``weights`` per superpixel (the regression's coefficients: how much switching that
    superpixel on adds to the score), ``top`` the at most k superpixels with the largest positive weights (largest
    first), ``intercept`` and ``fit`` (weighted R²) of the regression."""

    weights: np.ndarray
    top: list[int]
    intercept: float
    fit: float


def lime(
    image: np.ndarray,
    segments: np.ndarray,
    score_fn: Callable[[list[np.ndarray]], np.ndarray],
    samples: int = 500,
    top_k: int = 5,
    seed: int = 0,
    fill: str = "mean",
    width: float = KERNEL_WIDTH,
) -> list[LimeResult]:
    """Explain ``score_fn`` at ``image`` (BGR uint8) over its superpixels ``segments`` (H, W labels 0..K-1).
    ``score_fn`` takes a list of BGR images of the image's size and returns their scores, (B,) or (B, T) for T
    targets at once: every target shares the same ``samples`` perturbed copies, so the model runs ``samples``
    times in all (in batches), however many targets. Seeded by ``seed``: the same call gives the same answer."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    features = int(segments.max()) + 1
    masks = sample_masks(np.random.default_rng(seed), samples, features)
    filler = fill_image(image, fill)
    batch = max(1, min(BATCH, BATCH_BYTES // max(image.nbytes, 1)))
    scores = []
    for start in range(0, samples, batch):
        out = np.asarray(score_fn(perturb(image, segments, masks[start : start + batch], filler)), np.float64)
        scores.append(out.reshape(len(out), -1))
    y = np.concatenate(scores, 0)
    weights = kernel_weights(masks, width)
    results = []
    for t in range(y.shape[1]):
        coef, intercept, fit = weighted_ridge(masks, y[:, t], weights)
        order = [int(i) for i in np.argsort(-coef, kind="stable") if coef[i] > 0][:top_k]
        results.append(LimeResult(coef.astype(np.float32), order, intercept, fit))
    return results


# -- pictures --------------------------------------------------------------------------------------------------------
def weight_map(segments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(H, W) float32 in 0..1: each superpixel painted with its positive weight over the largest one (negative
    evidence is 0, as a CAM's ReLU leaves it; all 0 when no superpixel adds to the score)."""
    positive = np.clip(weights, 0, None)
    peak = float(positive.max()) if positive.size else 0.0
    scaled = positive / peak if peak > 0 else np.zeros_like(positive)
    return scaled.astype(np.float32)[segments]


def region_overlay(image: np.ndarray, segments: np.ndarray, top: list[int], dim: float = 0.3) -> np.ndarray:
    """The image with everything outside the ``top`` superpixels dimmed to ``dim`` and each top one outlined
    (yellow): the explanation as the paper draws it."""
    image = as_bgr(image)
    inside = np.isin(segments, top)
    out = np.where(inside[..., None], image, (image * dim).astype(np.uint8))
    edge = np.zeros(segments.shape, bool)
    edge[:, 1:] |= segments[:, 1:] != segments[:, :-1]
    edge[1:, :] |= segments[1:, :] != segments[:-1, :]
    edge[:, :-1] |= edge[:, 1:].copy()  # both sides of a border, so the line is visible from either region
    edge[:-1, :] |= edge[1:, :].copy()
    thick = max(1, round(max(segments.shape) / 300))
    if thick > 1:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((thick, thick), np.uint8)).astype(bool)
    out[edge & inside] = (0, 255, 255)
    return out

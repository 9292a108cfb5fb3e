"""Constant-velocity Kalman filter for boxes in image space (SORT / ByteTrack / BoT-SORT).

Two state forms, as the papers use them:

- ``xyah`` (ByteTrack, after DeepSORT): centre x, y, aspect ratio w/h, height, and their velocities; position and
  velocity noise grow with the box's height, the aspect ratio gets a small fixed noise.
- ``xywh`` (BoT-SORT): centre x, y, width, height and their velocities; the noise of x and w grows with the width,
  of y and h with the height, which follows a box whose aspect ratio changes (a person turning, a shape rotating).
"""

from __future__ import annotations

import numpy as np

# noise as a fraction of the box size: position 1/20, velocity 1/160 (the values SORT-family trackers settled on)
POSITION_WEIGHT = 1.0 / 20
VELOCITY_WEIGHT = 1.0 / 160


def xyxy_to_form(boxes: np.ndarray, form: str) -> np.ndarray:
    """(N, 4) corner boxes → (N, 4) measurements in ``form`` (xyah or xywh)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    if form == "xyah":
        return np.stack([cx, cy, w / np.maximum(h, 1e-9), h], 1)
    return np.stack([cx, cy, w, h], 1)


def form_to_xyxy(states: np.ndarray, form: str) -> np.ndarray:
    """(N, >=4) states → (N, 4) corner boxes."""
    s = np.asarray(states, np.float64).reshape(len(states), -1)
    cx, cy = s[:, 0], s[:, 1]
    if form == "xyah":
        h = s[:, 3]
        w = s[:, 2] * h
    else:
        w, h = s[:, 2], s[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


class BoxKalmanFilter:
    """Kalman filter over 8 numbers (4 measured, 4 velocities), one step per frame."""

    def __init__(self, form: str = "xyah"):
        if form not in ("xyah", "xywh"):
            raise ValueError(f"unknown Kalman state form '{form}' (xyah or xywh)")
        self.form = form
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame)
        self.H = np.eye(4, 8)

    def _scale(self, m: np.ndarray) -> np.ndarray:
        """(N, 4) per-dimension size the noise is proportional to (height, or width/height per axis)."""
        m = np.atleast_2d(m)
        if self.form == "xyah":
            h = m[:, 3:4]
            return np.concatenate([h, h, np.zeros_like(h), h], 1)
        w, h = m[:, 2:3], m[:, 3:4]
        return np.concatenate([w, h, w, h], 1)

    def _aspect_floor(self, std: np.ndarray, value: float) -> np.ndarray:
        if self.form == "xyah":
            std[:, 2] = value  # the aspect ratio has no size to scale with
        return std

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track from one measurement: zero velocity with a wide uncertainty."""
        m = np.asarray(measurement, np.float64).reshape(4)
        size = self._scale(m)[0]
        std_pos = self._aspect_floor((2 * POSITION_WEIGHT * size)[None], 1e-2)[0]
        std_vel = self._aspect_floor((10 * VELOCITY_WEIGHT * size)[None], 1e-5)[0]
        mean = np.concatenate([m, np.zeros(4)])
        return mean, np.diag(np.concatenate([std_pos, std_vel]) ** 2)

    def predict(self, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead for (N, 8) means and (N, 8, 8) covariances at once."""
        means = np.atleast_2d(means)
        size = self._scale(means[:, :4])
        std_pos = self._aspect_floor(POSITION_WEIGHT * size, 1e-2)
        std_vel = self._aspect_floor(VELOCITY_WEIGHT * size, 1e-5)
        q = np.concatenate([std_pos, std_vel], 1) ** 2
        motion = np.zeros((len(means), 8, 8))
        idx = np.arange(8)
        motion[:, idx, idx] = q
        means = means @ self.F.T
        covs = self.F @ covs @ self.F.T + motion
        return means, covs

    def update(self, mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct one track with its matched measurement."""
        size = self._scale(mean[:4])[0]
        std = self._aspect_floor((POSITION_WEIGHT * size)[None], 1e-1)[0]
        proj_mean = self.H @ mean
        proj_cov = self.H @ cov @ self.H.T + np.diag(std**2)
        # K = P Hᵀ S⁻¹, solved rather than inverted (S is symmetric positive definite)
        gain = np.linalg.solve(proj_cov, (cov @ self.H.T).T).T
        innovation = np.asarray(measurement, np.float64).reshape(4) - proj_mean
        new_mean = mean + gain @ innovation
        new_cov = cov - gain @ proj_cov @ gain.T
        return new_mean, new_cov

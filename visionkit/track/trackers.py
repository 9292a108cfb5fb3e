"""ByteTrack and BoT-SORT, written from their papers.

ByteTrack (Zhang et al., 2022, "ByteTrack: Multi-Object Tracking by Associating Every Detection Box"): a Kalman
filter predicts every track; high-score detections are matched first to all tracks (active and recently lost) by
IoU; the low-score detections that the first pass leaves, usually occluded or blurred objects, are matched second to
the active tracks that remain, instead of being thrown away. Unmatched high-score detections start tentative tracks,
confirmed when matched again on the next frame; a track unmatched for ``track_buffer`` frames is removed.

BoT-SORT (Aharon et al., 2022, "BoT-SORT: Robust Associations Multi-Pedestrian Tracking") keeps that association and
adds a Kalman state of (x, y, w, h) instead of (x, y, a, h), and camera-motion compensation: the background's
motion between frames, estimated with OpenCV, moves every predicted track before matching. Its re-identification
(appearance) branch is not implemented here: association uses motion and IoU only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from visionkit.registry import register
from visionkit.track.gmc import GlobalMotion
from visionkit.track.kalman import BoxKalmanFilter, form_to_xyxy, xyxy_to_form
from visionkit.track.matching import assign, box_iou, iou_cost

NEW, TRACKED, LOST, REMOVED = "new", "tracked", "lost", "removed"
TRAIL = 30  # centres kept per track for drawing trails


class Track:
    """One object's state: Kalman mean/covariance, the last matched detection, and its life cycle."""

    def __init__(self, box: np.ndarray, score: float, cls: int, det_index: int, kf: BoxKalmanFilter, frame: int):
        self.kf = kf
        self.mean, self.cov = kf.initiate(xyxy_to_form(box, kf.form)[0])
        self.box = np.asarray(box, np.float64)
        self.score, self.cls, self.det_index = float(score), int(cls), det_index
        self.id = 0  # given when confirmed
        self.state = NEW
        self.start_frame = self.end_frame = frame
        self.hits = 1
        self.trail: deque = deque([self.centre()], maxlen=TRAIL)

    def centre(self) -> tuple[float, float]:
        return (float(self.box[0] + self.box[2]) / 2, float(self.box[1] + self.box[3]) / 2)

    @property
    def predicted_box(self) -> np.ndarray:
        return form_to_xyxy(self.mean[None], self.kf.form)[0]

    def update(self, box: np.ndarray, score: float, cls: int, det_index: int, frame: int) -> None:
        self.mean, self.cov = self.kf.update(self.mean, self.cov, xyxy_to_form(box, self.kf.form)[0])
        self.box = np.asarray(box, np.float64)
        self.score, self.cls, self.det_index = float(score), int(cls), det_index
        self.end_frame = frame
        self.hits += 1
        self.trail.append(self.centre())


@dataclass(frozen=True)
class TrackedBox:
    """A confirmed track as it stood in one frame (a snapshot: later frames do not change it)."""

    id: int
    det_index: int  # the row of the frame's detections it was matched to
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 of that detection
    score: float
    cls: int
    trail: tuple[tuple[float, float], ...]  # its last centres, oldest first


@dataclass
class TrackOutput:
    """One frame's result. ``tracks``: the confirmed tracks matched to a detection in this frame (``det_index``
    points into the detections given); ``new``/``lost``/``removed``: ids that changed state in this frame."""

    frame: int
    tracks: list[TrackedBox] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"active": len(self.tracks), "new": len(self.new), "lost": len(self.lost), "removed": len(self.removed)}


class ByteTracker:
    """ByteTrack: two-stage IoU association (high-score, then low-score detections) over Kalman-predicted tracks."""

    kalman_form = "xyah"

    def __init__(
        self,
        track_high_thresh: float = 0.5,
        track_low_thresh: float = 0.1,
        new_track_thresh: float = 0.6,
        match_thresh: float = 0.8,
        second_match_thresh: float = 0.5,
        unconfirmed_match_thresh: float = 0.7,
        track_buffer: int = 30,
        fuse_score: bool = True,
        frame_rate: float = 30.0,
        **unused,
    ):
        if unused:
            raise TypeError(f"unknown tracker settings: {', '.join(sorted(unused))}")
        self.high, self.low, self.birth = track_high_thresh, track_low_thresh, new_track_thresh
        self.match_thresh, self.second_thresh = match_thresh, second_match_thresh
        self.unconfirmed_thresh = unconfirmed_match_thresh
        self.fuse_score = fuse_score
        # a buffer given for 30 fps video lasts as long in time at any frame rate
        self.max_lost = max(1, int(round(track_buffer * (frame_rate or 30.0) / 30.0)))
        self.kf = BoxKalmanFilter(self.kalman_form)
        assign(np.zeros((1, 1)), 1.0)  # imports the solver now, not inside the first frame's timing
        self.reset()

    def reset(self) -> None:
        self.frame = 0
        self.next_id = 1
        self.tracks: list[Track] = []  # every live track: new (tentative), tracked or lost

    # -- hooks -----------------------------------------------------------------------------------------------------
    def camera_motion(self, frame: np.ndarray | None, tracks: list[Track]) -> None:
        """Move predicted tracks by the camera's motion (BoT-SORT); ByteTrack assumes a still camera."""

    # -- one frame -------------------------------------------------------------------------------------------------
    def update(self, detections: np.ndarray, frame: np.ndarray | None = None) -> TrackOutput:
        """Associate one frame's detections, (N, 6) rows of x1, y1, x2, y2, score, class, with the tracks."""
        self.frame += 1
        out = TrackOutput(self.frame)
        dets = np.asarray(detections, np.float64).reshape(-1, 6)
        for t in self.tracks:
            t.det_index = -1
        if self.tracks:
            means, covs = self.kf.predict(
                np.stack([t.mean for t in self.tracks]), np.stack([t.cov for t in self.tracks])
            )
            for t, m, c in zip(self.tracks, means, covs):
                if t.state != TRACKED:
                    m[7] = 0.0  # a lost or tentative track's size is not extrapolated (it drifts unchecked)
                t.mean, t.cov = m, c
        self.camera_motion(frame, self.tracks)

        # a box with no width or height (clipped at the image edge) has no shape for the Kalman filter to follow: it
        # stays untracked (id None in the outputs)
        usable = (dets[:, 2] - dets[:, 0] > 1e-3) & (dets[:, 3] - dets[:, 1] > 1e-3)
        scores = np.where(usable, dets[:, 4], -1.0)
        high = np.flatnonzero(scores >= self.high)
        low = np.flatnonzero((scores > self.low) & (scores < self.high))
        confirmed = [t for t in self.tracks if t.state in (TRACKED, LOST)]
        tentative = [t for t in self.tracks if t.state == NEW]

        # 1) high-score detections against active and lost tracks
        pool = confirmed
        m1, left_tracks, left_high = self._match(pool, dets, high, self.match_thresh, self.fuse_score)
        for ti, di in m1:
            self._apply(pool[ti], dets, high[di], out)
        # 2) low-score detections against the active tracks still unmatched (lost ones need a confident box)
        remaining = [pool[i] for i in left_tracks if pool[i].state == TRACKED]
        m2, left2, _ = self._match(remaining, dets, low, self.second_thresh, False)
        for ti, di in m2:
            self._apply(remaining[ti], dets, low[di], out)
        for i in left2:
            t = remaining[i]
            t.state = LOST
            out.lost.append(t.id)
        # 3) tentative tracks (born last frame) against the high-score detections left
        high_left = high[left_high]
        m3, left_tent, left_high2 = self._match(tentative, dets, high_left, self.unconfirmed_thresh, self.fuse_score)
        for ti, di in m3:
            t = tentative[ti]
            self._apply(t, dets, high_left[di], out)
        for i in left_tent:
            tentative[i].state = REMOVED  # a one-frame track: never confirmed, never reported
        # 4) births: confident detections nobody claimed
        for di in high_left[left_high2]:
            if dets[di, 4] < self.birth:
                continue
            t = Track(dets[di, :4], dets[di, 4], int(dets[di, 5]), int(di), self.kf, self.frame)
            if self.frame == 1:  # nothing to confirm against on the first frame: trust it at once
                self._confirm(t, out)
            self.tracks.append(t)
        # 5) lost too long → removed
        for t in self.tracks:
            if t.state == LOST and self.frame - t.end_frame > self.max_lost:
                t.state = REMOVED
                out.removed.append(t.id)
        self.tracks = [t for t in self.tracks if t.state != REMOVED]
        self._drop_duplicates(out)
        out.tracks = [
            TrackedBox(t.id, t.det_index, tuple(float(v) for v in t.box), t.score, t.cls, tuple(t.trail))
            for t in self.tracks
            if t.state == TRACKED and t.end_frame == self.frame
        ]
        return out

    def _match(self, tracks: list[Track], dets: np.ndarray, idx: np.ndarray, thresh: float, fuse: bool):
        if not len(tracks) or not len(idx):
            return [], list(range(len(tracks))), list(range(len(idx)))
        boxes = np.stack([t.predicted_box for t in tracks])
        cost = iou_cost(boxes, dets[idx, :4], dets[idx, 4] if fuse else None)
        return assign(cost, thresh)

    def _apply(self, t: Track, dets: np.ndarray, di: int, out: TrackOutput) -> None:
        t.update(dets[di, :4], dets[di, 4], int(dets[di, 5]), int(di), self.frame)
        if t.state == NEW:
            self._confirm(t, out)
        t.state = TRACKED

    def _confirm(self, t: Track, out: TrackOutput) -> None:
        t.id = self.next_id
        self.next_id += 1
        t.state = TRACKED
        out.new.append(t.id)

    def _drop_duplicates(self, out: TrackOutput) -> None:
        """A lost track that overlaps an active one almost exactly is the same object twice: keep the older."""
        active = [t for t in self.tracks if t.state == TRACKED]
        lost = [t for t in self.tracks if t.state == LOST]
        if not active or not lost:
            return
        iou = box_iou(np.stack([t.predicted_box for t in active]), np.stack([t.predicted_box for t in lost]))
        for i, j in zip(*np.nonzero(iou > 0.85)):
            a, b = active[i], lost[j]
            if a.state == REMOVED or b.state == REMOVED:
                continue
            drop = b if (a.end_frame - a.start_frame) >= (b.end_frame - b.start_frame) else a
            drop.state = REMOVED
            out.removed.append(drop.id)
        self.tracks = [t for t in self.tracks if t.state != REMOVED]


class BoTSORT(ByteTracker):
    """BoT-SORT without re-identification: ByteTrack's association with an (x, y, w, h) Kalman state and camera-
    motion compensation."""

    kalman_form = "xywh"

    def __init__(self, cmc_method: str = "sparse_flow", cmc_downscale: int = 0, **kw):
        super().__init__(**kw)
        self.gmc = GlobalMotion(cmc_method, cmc_downscale)
        self.last_warp = np.eye(2, 3)

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "gmc"):
            self.gmc.reset()

    def camera_motion(self, frame: np.ndarray | None, tracks: list[Track]) -> None:
        warp = self.gmc.apply(frame)
        self.last_warp = warp
        if not tracks or np.allclose(warp, np.eye(2, 3)):
            return
        rot, shift = warp[:, :2], warp[:, 2]
        # the same linear map moves position, size and both velocities; only the position is translated
        big = np.kron(np.eye(4), rot)
        for t in tracks:
            t.mean = big @ t.mean
            t.mean[:2] += shift
            t.cov = big @ t.cov @ big.T


@register("tracker", "bytetrack")
def bytetrack(**settings) -> ByteTracker:
    """ByteTrack (settings: visionkit/track/cfg/bytetrack.yaml)."""
    return ByteTracker(**settings)


@register("tracker", "botsort")
def botsort(**settings) -> BoTSORT:
    """BoT-SORT without re-identification (settings: visionkit/track/cfg/botsort.yaml)."""
    return BoTSORT(**settings)

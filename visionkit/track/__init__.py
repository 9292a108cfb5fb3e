"""Multi-object tracking: ByteTrack and BoT-SORT (registry kind "tracker"), MOTChallenge files and metrics, and the
frame-by-frame loop that runs a task's predictions through a tracker."""

from visionkit.track import trackers  # noqa: F401  (registers bytetrack and botsort)
from visionkit.track.config import build_tracker, load_tracker_settings
from visionkit.track.trackers import BoTSORT, ByteTracker, Track, TrackedBox, TrackOutput

__all__ = ["BoTSORT", "ByteTracker", "Track", "TrackedBox", "TrackOutput", "build_tracker", "load_tracker_settings"]

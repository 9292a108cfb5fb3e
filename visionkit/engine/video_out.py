"""An annotated video written frame by frame (predict and track): OpenCV's VideoWriter reports nothing when it
fails, so this one checks what it can.

- It opens on the first frame (that frame's size is the video's) and raises when no encoder would open the file.
- A frame of another size is scaled to the video's: the writer would drop it silently.
- It raises ENOSPC (which :mod:`visionkit.engine.diskfull` turns into the run's one clear error) when the disk has
  no room left for another frame, instead of writing on into a file that ends early; checked every few frames
  with ``statvfs``, which costs microseconds.
- ``close()`` checks that the file holds something.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from visionkit.errors import DataError

CHECK_EVERY = 8  # frames between two free-space readings


class VideoOut:
    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps or 30.0
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame.shape[:2]
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise DataError(
                    f"could not open '{self.path}' for writing an mp4v video (is the folder writable, and does this "
                    f"OpenCV build have a video encoder?); run without save=True to skip the annotated video"
                )
        if frame.shape[1::-1] != self.size:  # a writer silently drops a frame of another size
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        if self.frames % CHECK_EVERY == 0:
            self._check_space(frame.nbytes)
        self.writer.write(frame)
        self.frames += 1

    def _check_space(self, frame_bytes: int) -> None:
        # compressed frames are far smaller than raw ones; room for one raw frame is a safe floor
        if shutil.disk_usage(self.path.parent).free < frame_bytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if sys.exc_info()[0] is not None:  # closed while another error is raised: that one is the news
            return
        if self.frames and (not self.path.exists() or self.path.stat().st_size == 0):
            w, h = self.size or (0, 0)
            self._check_space(w * h * 3)
            raise DataError(f"the video writer wrote nothing to '{self.path}' ({self.frames} frames were given)")

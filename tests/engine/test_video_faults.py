"""Videos that go wrong in the middle, generated with OpenCV: a file cut off, a frame whose bytes are broken, frames
that change size. predict goes on with a warning naming the frames, and keeps what the good frames gave."""

import json
import shutil
import warnings

import cv2
import numpy as np
import pytest

from tests.conftest import TINY
from visionkit import Model

N = 20


@pytest.fixture(scope="module")
def model(shapes_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("vf")
    shutil.copytree(shapes_root / "classify", root / "cls")
    m = Model("mnist-tiny")
    m.train(**TINY, data=str(root / "cls"), project=str(root), epochs=1)
    return Model(str(m.save_dir / "weights" / "best.pt"))


def write_avi(path, n=N, size=(48, 48)) -> list[tuple[int, int]]:
    """An MJPEG AVI of noisy frames; returns each frame's (offset, length) of its JPEG data in the file."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for _ in range(n):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    chunks, k = [], data.index(b"movi") + 4
    while len(chunks) < n:  # the '00dc' chunks of the movi list, in order
        j = data.index(b"00dc", k)
        length = int.from_bytes(data[j + 4 : j + 8], "little")
        chunks.append((j + 8, length))
        k = j + 8 + length + (length & 1)
    return chunks


def frames_in(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def predict(model, video, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.predict(str(video), project=str(tmp_path / "out"), save=True, verbose=False)
    saved = json.loads((model.save_dir / "predictions.json").read_text())
    assert [r["image"] for r in saved] == [r["image"] for r in res]
    return [int(r["image"].rpartition("#")[2]) for r in res], [str(w.message) for w in caught]


def test_a_video_cut_off_keeps_the_frames_before_the_cut(model, tmp_path):
    video = tmp_path / "clip.avi"
    chunks = write_avi(video)
    data = video.read_bytes()
    video.write_bytes(data[: chunks[12][0] + 10])  # cut inside frame 12: frames 0-11 whole
    indices, said = predict(model, video, tmp_path)
    assert indices == list(range(12))
    assert any(f"'{video}' is cut off or damaged from frame 12" in s and f"declares {N} frames" in s for s in said)
    assert frames_in(model.save_dir / "clip.mp4") == 12  # the annotated video of the good frames


def test_a_broken_frame_is_skipped_and_the_frames_after_it_are_kept(model, tmp_path):
    video = tmp_path / "clip.avi"
    chunks = write_avi(video)
    data = bytearray(video.read_bytes())
    start, length = chunks[7]
    data[start : start + length] = b"\0" * length  # frame 7's JPEG data gone; the container is intact
    video.write_bytes(bytes(data))
    indices, said = predict(model, video, tmp_path)
    assert indices == [i for i in range(N) if i != 7]  # each frame keeps its own index
    assert any(f"'{video}': frame 7 could not be decoded and was skipped" in s for s in said)
    assert not any("cut off" in s for s in said)
    assert frames_in(model.save_dir / "clip.mp4") == N - 1


def test_frames_that_change_size_are_all_predicted(model, tmp_path):
    video = tmp_path / "clip.avi"
    chunks = write_avi(video)
    data = bytearray(video.read_bytes())
    smooth = cv2.imencode(".jpg", np.full((64, 96, 3), 128, np.uint8))[1].tobytes()
    for start, length in chunks[10:]:  # frames 10-19 become 96×64 (padded: the container's sizes stay right)
        assert len(smooth) <= length
        data[start : start + length] = smooth + b"\0" * (length - len(smooth))
    video.write_bytes(bytes(data))
    indices, _ = predict(model, video, tmp_path)
    assert indices == list(range(N))  # OpenCV scales the new size to the stream's; nothing is lost
    assert frames_in(model.save_dir / "clip.mp4") == N


def test_a_decoder_that_delivers_the_new_size_is_warned_about_and_every_frame_is_written(model, tmp_path, monkeypatch):
    import visionkit.engine.predictor as predictor

    video = tmp_path / "clip.avi"
    write_avi(video)
    real = cv2.VideoCapture

    class Growing:  # a backend that hands over frames at their new size (OpenCV's FFmpeg backend rescales them)
        def __init__(self, *a):
            self.cap, self.i = real(*a), 0

        def read(self):
            ok, frame = self.cap.read()
            self.i += ok
            if ok and self.i > 5:
                frame = cv2.resize(frame, (96, 64))
            return ok, frame

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(predictor.cv2, "VideoCapture", Growing)
    indices, said = predict(model, video, tmp_path)
    monkeypatch.undo()
    assert indices == list(range(N))
    assert any(f"'{video}': frame 5 is 96×64, the frames before it 48×48" in s for s in said)
    # a VideoWriter silently drops frames of another size: the annotated video must still hold every frame
    assert frames_in(model.save_dir / "clip.mp4") == N


def test_a_full_disk_while_the_video_is_written_is_one_clear_error(model, tmp_path, monkeypatch):
    """OpenCV's VideoWriter drops frames silently on a full disk; the writer checks the free space itself."""
    import collections

    import visionkit.engine.video_out as video_out
    from visionkit.engine.diskfull import DiskFullError

    video = tmp_path / "clip.avi"
    write_avi(video)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(video_out.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 100))
    with pytest.raises(DiskFullError, match=r"predict: no space left on the device while writing '.*clip\.mp4'"):
        model.predict(str(video), project=str(tmp_path / "out"), save=True, verbose=False)

"""Trackers (ByteTrack, BoT-SORT), their settings, MOTChallenge files and metrics, and `visionkit detect track`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from tests.conftest import run_cli
from visionkit.data.clips import gt_rows, make_clip, write_sequence
from visionkit.errors import DataError, UsageError
from visionkit.registry import REGISTRY
from visionkit.track import build_tracker, load_tracker_settings
from visionkit.track.gmc import GlobalMotion
from visionkit.track.mot import evaluate_mot, mot_row, read_mot


def gt_detections(clip: dict, t: int, rng: np.random.Generator, noise: float = 1.0, hide: set[int] = frozenset()):
    """Frame ``t``'s ground-truth boxes of objects seen enough, jittered by ``noise`` px, as detections (N, 6), with
    the ground-truth id of each row."""
    rows, ids = [], []
    for o in clip["tracks"][t]:
        if o["visibility"] < 0.25 or o["id"] in hide:
            continue
        box = np.asarray(o["box"]) + rng.normal(0, noise, 4)
        rows.append([*box, rng.uniform(0.7, 0.95), o["cls"]])
        ids.append(o["id"])
    return np.asarray(rows).reshape(-1, 6), ids


def run_on_clip(tracker, clip, hide_frames: dict[int, set[int]] | None = None, seed: int = 0):
    """Track a clip from its (jittered) ground truth; returns {gt id: [track id per frame it was reported]} and the
    per-frame outputs."""
    rng = np.random.default_rng(seed)
    seen: dict[int, list[int]] = {}
    outs = []
    for t, frame in enumerate(clip["frames"]):
        dets, ids = gt_detections(clip, t, rng, hide=(hide_frames or {}).get(t, set()))
        out = tracker.update(dets, frame)
        outs.append(out)
        for tr in out.tracks:
            seen.setdefault(ids[tr.det_index], []).append(tr.id)
    return seen, outs


def crossing_clip(pan: float = 0.0) -> dict:
    clip = make_clip(seed=4, frames=60, size=128, objects=3, pan=pan)
    # the clip really has a crossing: the farther shape is hidden (no detection) for a few frames
    first = [[o for o in f if o["id"] in (1, 2)] for f in clip["tracks"]]
    hidden = min(min(o["visibility"] for o in f) for f in first)
    assert hidden < 0.25, "the generated crossing hides nothing; the test would not test a crossing"
    return clip


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_ids_stay_fixed_through_a_crossing(name):
    clip = crossing_clip()
    seen, outs = run_on_clip(build_tracker(name), clip)
    assert set(seen) == {1, 2, 3}
    for gt_id, ids in seen.items():
        assert len(set(ids)) == 1, f"object {gt_id} changed identity: {ids}"
    assert len(seen[1]) == len(seen[3]) == 60  # reported on every frame they are detected
    assert len({ids[0] for ids in seen.values()}) == 3  # three objects, three identities
    assert sum(o.counts()["new"] for o in outs) == 3 and sum(o.counts()["removed"] for o in outs) == 0


def jerked_clip(shift: int = 18, at: int = 20) -> dict:
    """A still camera that jumps ``shift`` px right at frame ``at`` (the whole picture moves left): frames and
    boxes shifted alike; objects that leave the picture are dropped from the ground truth."""
    clip = make_clip(seed=2, frames=40, size=128, objects=3, crossing=False)
    for t in range(at, len(clip["frames"])):
        clip["frames"][t] = np.roll(clip["frames"][t], -shift, axis=1)
        kept = []
        for o in clip["tracks"][t]:
            x1, y1, x2, y2 = o["box"]
            if x1 - shift >= 0:
                kept.append({**o, "box": [x1 - shift, y1, x2 - shift, y2]})
        clip["tracks"][t] = kept
    return clip


def test_botsort_camera_motion_compensation_keeps_ids_through_a_camera_jump():
    clip = jerked_clip()
    seen, _ = run_on_clip(build_tracker("botsort"), clip)
    assert seen and all(len(set(ids)) == 1 for ids in seen.values()), seen
    # the same jump breaks the tracks of a tracker without compensation: the test can tell the two apart
    seen, _ = run_on_clip(build_tracker("bytetrack"), clip)
    assert any(len(set(ids)) > 1 for ids in seen.values()), seen


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_id_survives_a_short_occlusion_and_is_removed_after_the_buffer(name):
    clip = crossing_clip()
    gap = set(range(20, 28))  # object 3 unseen for 8 frames
    seen, outs = run_on_clip(build_tracker(name), clip, {t: {3} for t in gap})
    assert len(set(seen[3])) == 1, f"object 3 came back with a new id: {seen[3]}"
    assert sum(outs[t].counts()["lost"] for t in gap) == 1

    # gone for longer than the buffer: the track is removed, and a return gets a new identity
    tracker = build_tracker({"tracker_type": name, "track_buffer": 5})
    seen, outs = run_on_clip(tracker, clip, {t: {3} for t in range(20, 40)})
    assert sum(o.counts()["removed"] for o in outs[20:40]) == 1
    assert len(set(seen[3])) == 2


def test_low_score_boxes_keep_a_track_alive_only_in_the_second_association():
    """ByteTrack's point: a box whose score drops (occlusion, blur) still continues its track."""
    clip = crossing_clip()
    for low, expect_same in ((0.1, True), (0.5, False)):
        tracker = build_tracker({"tracker_type": "bytetrack", "track_low_thresh": low, "track_buffer": 2})
        rng = np.random.default_rng(0)
        ids = []
        for t, frame in enumerate(clip["frames"][:40]):
            dets, gt_ids = gt_detections(clip, t, rng)
            if 15 <= t < 25:
                dets[:, 4] = np.where(np.asarray(gt_ids) == 3, 0.3, dets[:, 4])  # below the high threshold
            out = tracker.update(dets, frame)
            ids += [tr.id for tr in out.tracks if gt_ids[tr.det_index] == 3]
        assert (len(set(ids)) == 1) == expect_same, ids


def test_empty_frames_and_degenerate_boxes_are_handled():
    tracker = build_tracker("bytetrack")
    dets = np.array([[10, 10, 30, 30, 0.9, 0], [40, 40, 40, 60, 0.9, 1]])  # the second has no width
    out = tracker.update(dets)
    assert [t.det_index for t in out.tracks] == [0] and out.new == [1]
    assert tracker.update(np.zeros((0, 6))).counts() == {"active": 0, "new": 0, "lost": 1, "removed": 0}


def test_camera_motion_is_measured_from_the_background():
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 255, (200, 260, 3), dtype=np.uint8), (5, 5), 0)
    for method in ("sparse_flow", "orb"):
        gmc = GlobalMotion(method, downscale=1)
        assert np.allclose(gmc.apply(big[20:180, 10:210]), np.eye(2, 3))  # first frame: nothing to compare
        warp = gmc.apply(big[20:180, 16:216])  # the camera moved 6 px right: the scene moves 6 px left
        assert warp[0, 2] == pytest.approx(-6, abs=0.6) and warp[1, 2] == pytest.approx(0, abs=0.6), (method, warp)
        assert np.allclose(warp[:, :2], np.eye(2), atol=0.02)


def test_background_corners_are_tracked_on_and_detected_again_at_intervals(monkeypatch):
    """Corners that moved with the background are followed from frame to frame; new ones are detected every
    REDETECT_EVERY frames (or when too few remain), and the shift stays right through a panning clip."""
    import visionkit.track.gmc as gmc_module

    calls = []
    detect = gmc_module.cv2.goodFeaturesToTrack
    monkeypatch.setattr(gmc_module.cv2, "goodFeaturesToTrack", lambda *a, **k: calls.append(1) or detect(*a, **k))
    clip = make_clip(seed=3, frames=31, size=160, objects=4, pan=2.0)
    gmc = GlobalMotion("sparse_flow", downscale=1)
    shifts = [gmc.apply(f)[0, 2] for f in clip["frames"]][1:]
    assert np.mean(np.abs(np.asarray(shifts) + 2.0)) < 0.5  # the scene moves 2 px left per frame
    assert 3 <= len(calls) <= 30 // gmc_module.REDETECT_EVERY + 2  # far fewer detections than frames


def test_automatic_downscale_follows_the_frame_size_and_keeps_full_size_motion():
    rng = np.random.default_rng(1)
    # a smooth texture at HD size: an 1100×1960 canvas, frames of 1080×1920 cut from it
    small = cv2.GaussianBlur(rng.integers(0, 255, (280, 490, 3), dtype=np.uint8), (3, 3), 0)
    big = cv2.resize(small, (1960, 1100), interpolation=cv2.INTER_CUBIC)
    gmc = GlobalMotion("sparse_flow")  # downscale 0: automatic
    gmc.apply(big[10:1090, 20:1940])
    assert gmc.downscale == 4  # a 1920-px long side shrinks to 480
    warp = gmc.apply(big[10:1090, 32:1952])  # 12 px to the right at full size
    assert warp[0, 2] == pytest.approx(-12, abs=2) and warp[1, 2] == pytest.approx(0, abs=2), warp
    for shape, factor in (((720, 1280), 2), ((160, 160), 1), ((959, 500), 1)):
        gmc = GlobalMotion("sparse_flow")
        gmc.apply(np.zeros((*shape, 3), np.uint8))
        assert gmc.downscale == factor, shape
    gmc = GlobalMotion("sparse_flow", downscale=3)  # a given factor is kept
    gmc.apply(big[10:1090, 20:1940])
    assert gmc.downscale == 3


def test_metrics_match_hand_computed_values():
    """One object over 4 frames, tracked as id 7 then id 8 (a switch): MOTA = 1 − 1/4, IDF1 = 2·2/(2·2 + 2 + 2),
    DetA = 1, AssA = 2/(2 + 2) so HOTA = √0.5. Then a false positive and a miss: MOTA = 1 − (1 + 1)/4."""
    box = [10, 10, 20, 20]
    gt = {f: np.array([[1, *box, 1.0]]) for f in range(1, 5)}
    pred = {f: np.array([[7 if f <= 2 else 8, *box, 0.9]]) for f in range(1, 5)}
    m = evaluate_mot(gt, pred)
    assert m["IDSW"] == 1 and m["MOTA"] == pytest.approx(0.75)
    assert m["IDF1"] == pytest.approx(0.5) and m["DetA"] == pytest.approx(1.0)
    assert m["AssA"] == pytest.approx(0.5) and m["HOTA"] == pytest.approx(np.sqrt(0.5))

    pred = {f: np.array([[7, *box, 0.9]]) for f in (1, 2, 3)}
    pred[2] = np.array([[7, *box, 0.9], [9, 50, 50, 10, 10, 0.5]])  # a false positive far away
    m = evaluate_mot(gt, pred)  # frame 4 missed
    assert (m["FP"], m["FN"], m["IDSW"]) == (1, 1, 0)
    assert m["MOTA"] == pytest.approx(1 - 2 / 4) and m["IDF1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))

    # a prediction on an object the ground truth flags "ignore" is neither a hit nor a false positive
    gt_ignored = {**gt, 2: np.array([[1, *box, 1.0], [2, 50, 50, 10, 10, 0.0]])}
    assert evaluate_mot(gt_ignored, pred)["FP"] == 0


def test_metrics_agree_with_motmetrics_run_directly():
    mm = pytest.importorskip("motmetrics")
    clip = crossing_clip()
    seen, outs = run_on_clip(build_tracker("bytetrack"), clip, {t: {1, 2} for t in range(24, 30)}, seed=1)
    rows = [mot_row(o.frame, t.id, t.box, t.score) for o in outs for t in o.tracks]
    assert len({r.split(",")[2] for r in rows}) > 50  # snapshots: each row has its own frame's box
    gt = {}
    for r in gt_rows(clip):
        v = [float(x) for x in r.split(",")]
        gt.setdefault(int(v[0]), []).append([v[1], *v[2:6], v[6]])
    pred = {}
    for r in rows:
        v = [float(x) for x in r.split(",")]
        pred.setdefault(int(v[0]), []).append(v[1:7])
    gt = {f: np.asarray(v) for f, v in gt.items()}
    pred = {f: np.asarray(v) for f, v in pred.items()}
    ours = evaluate_mot({f: g[g[:, 5] > 0] for f, g in gt.items()}, pred)

    acc = mm.MOTAccumulator(auto_id=True)
    for f in sorted(gt):
        g = gt[f][gt[f][:, 5] > 0]
        p = pred.get(f, np.zeros((0, 6)))
        ious = np.array([[_iou(a, b) for b in p[:, 1:5]] for a in g[:, 1:5]]).reshape(len(g), len(p))
        acc.update(g[:, 0].tolist(), p[:, 0].tolist(), np.where(ious >= 0.5, 1 - ious, np.nan))
    ref = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="x")
    assert ours["MOTA"] == pytest.approx(float(ref["mota"].iloc[0]), abs=1e-9)
    assert ours["IDF1"] == pytest.approx(float(ref["idf1"].iloc[0]), abs=1e-9)
    assert ours["IDSW"] == int(ref["num_switches"].iloc[0])
    assert 0.5 < ours["MOTA"] < 1 and 0 < ours["HOTA"] < 1  # a real, imperfect case


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_mot_files_round_trip_and_bad_rows_name_the_line(tmp_path):
    row = mot_row(3, 12, [10.0, 20.0, 40.5, 60.0], 0.87654)
    assert row == "3,12,10.00,20.00,30.50,40.00,0.87654,-1,-1,-1"
    assert len(row.split(",")) == 10
    path = tmp_path / "t.txt"
    path.write_text(row + "\n" + mot_row(3, 13, [0, 0, 5, 5], 0.5) + "\n")
    frames = read_mot(path)
    assert list(frames) == [3] and frames[3].shape == (2, 6)
    assert frames[3][0].tolist() == pytest.approx([12, 10, 20, 30.5, 40, 0.87654])
    path.write_text(row + "\n0,1,2,3,4,5\n")
    with pytest.raises(DataError, match=r"t.txt:2"):
        read_mot(path)


def test_sequences_are_written_in_motchallenge_layout(tmp_path):
    clip = make_clip(seed=1, frames=5, size=64, objects=2)
    seq = write_sequence(clip, tmp_path, "s1")
    assert len(list((seq / "img1").glob("*.jpg"))) == 5
    gt = read_mot(seq / "gt" / "gt.txt")
    assert sorted(gt) == [1, 2, 3, 4, 5] and all(len(v) == 2 for v in gt.values())
    assert gt[1][0, 1:5] == pytest.approx(_xywh(clip["tracks"][0][0]["box"]), abs=0.01)
    assert "frameRate=30" in (seq / "seqinfo.ini").read_text()


def _xywh(b):
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def test_tracker_settings_are_checked(tmp_path):
    assert REGISTRY.available("tracker") == ["botsort", "bytetrack"]
    assert load_tracker_settings("botsort")["cmc_method"] == "sparse_flow"
    mine = tmp_path / "my.yaml"
    mine.write_text(yaml.safe_dump({"tracker_type": "bytetrack", "track_buffer": 60}))
    s = load_tracker_settings(str(mine))
    assert s["track_buffer"] == 60 and s["match_thresh"] == 0.8  # the rest from the shipped file
    assert build_tracker(str(mine), frame_rate=15).max_lost == 30  # 60 frames at 30 fps = 2 s = 30 frames at 15
    for bad, msg in (
        ({"tracker_type": "bytetrack", "track_bufer": 3}, "Did you mean 'track_buffer'"),
        ({"tracker_type": "bytetrack", "match_thresh": 1.5}, r"match_thresh.*\[0, 1\]"),
        ({"tracker_type": "bytetrack", "cmc_method": "orb"}, "unknown key 'cmc_method'"),
        ({"tracker_type": "botsort", "cmc_method": "orbb"}, "Did you mean 'orb'"),
        ({"tracker_type": "deepsort"}, "tracker_type must be one of"),
        ({"tracker_type": "bytetrack", "track_low_thresh": 0.7}, "must not exceed"),
    ):
        mine.write_text(yaml.safe_dump(bad))
        with pytest.raises(UsageError, match=msg):
            load_tracker_settings(str(mine))
    with pytest.raises(UsageError, match="Did you mean 'botsort'"):
        load_tracker_settings("botsrt")
    with pytest.raises(UsageError, match="do not exist"):
        load_tracker_settings(str(tmp_path / "missing.yaml"))


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    from tests.conftest import train_tiny
    from visionkit.data.synthetic import generate_shapes

    root = generate_shapes(tmp_path_factory.mktemp("d") / "shapes", n_train=16, n_val=8, size=48, verbose=False)
    return train_tiny("detect", "yolo-n", root, tmp_path_factory)


@pytest.mark.slow
def test_detect_track_cli_end_to_end_pt_and_onnx(tiny_detector, tmp_path):
    """A tiny clip as a video: predictions.json with ids, MOTChallenge rows, a video, metrics; the ONNX export gives
    the same tracks; frame-by-frame calls with persist=True give the same ids as one call."""
    from visionkit import Model

    clip = make_clip(seed=2, frames=12, size=64, objects=2)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for f in clip["frames"]:
        writer.write(f)
    writer.release()
    seq = write_sequence(clip, tmp_path, "seq")
    # a 1-epoch detector scores low: a user's copy of the settings with low thresholds still makes tracks
    settings = tmp_path / "low.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "tracker_type": "botsort",
                "track_high_thresh": 0.002,
                "track_low_thresh": 0.001,
                "new_track_thresh": 0.002,
                "cmc_method": "none",
            }
        )
    )
    ckpt = str(tiny_detector.ckpt_path)
    common = [f"tracker={settings}", "conf=0.001", "max_det=5", "save", "save_txt", f"project={tmp_path}", "imgsz=64"]
    r = run_cli(
        "detect", "track", f"model={ckpt}", f"source={video}", f"gt={seq / 'gt' / 'gt.txt'}", "name=pt", *common
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "detect" / "pt"
    frames = json.loads((out / "predictions.json").read_text())
    assert [f["frame"] for f in frames] == list(range(1, 13))
    assert "HOTA" in r.stdout and "frame 1:" in r.stdout
    rows = (out / "tracks" / "clip.txt").read_text().splitlines()
    ids = [(f["frame"], d["id"]) for f in frames for d in f["detections"] if d["id"] is not None]
    assert len(rows) == len(ids) > 0
    assert sorted((int(r.split(",")[0]), int(r.split(",")[1])) for r in rows) == sorted(ids)
    assert all(len(r.split(",")) == 10 and r.endswith(",-1,-1,-1") for r in rows)
    assert cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 12
    summary = json.loads((out / "track.json").read_text())
    assert set(summary["metrics"]) >= {"HOTA", "MOTA", "IDF1", "IDSW"}
    assert sum(f["tracks"]["new"] for f in frames) == len({i for _, i in ids})

    onnx = tiny_detector.export(format="onnx", imgsz=64)
    r = run_cli("detect", "track", f"model={onnx}", f"source={video}", "name=onnx", *common)
    assert r.returncode == 0, r.stderr
    onnx_rows = (tmp_path / "detect" / "onnx" / "tracks" / "clip.txt").read_text().splitlines()
    assert [r.split(",")[:2] for r in onnx_rows] == [r.split(",")[:2] for r in rows]

    m = Model(ckpt)
    kw = {"tracker": str(settings), "conf": 0.001, "max_det": 5, "imgsz": 64, "verbose": False}
    streamed = [m.track(f, persist=True, **kw)[0] for f in clip["frames"]]
    assert [s["frame"] for s in streamed] == list(range(1, 13))
    assert [[d["id"] for d in s["detections"]] for s in streamed] == [
        [d["id"] for d in f["detections"]] for f in frames
    ]
    assert m.track(clip["frames"][0], persist=False, **kw)[0]["frame"] == 1  # a new tracker


def test_detect_track_refuses_bad_input(tmp_path):
    r = run_cli("detect", "track", "model=x.pt", "tracker=bytetrak", f"source={tmp_path}")
    assert r.returncode == 2 and "Did you mean 'bytetrack'" in r.stderr, r.stderr
    r = run_cli("detect", "trak", "model=x.pt")
    assert r.returncode == 2 and "Did you mean 'track'" in r.stderr


def test_track_goes_on_through_a_damaged_video(tiny_detector, tmp_path):
    """A broken frame is skipped and a cut-off file ends early, each with a warning naming the frames (as in
    predict); the good frames are tracked and written to the video and the predictions."""
    import warnings

    from tests.engine.test_video_faults import frames_in, write_avi
    from visionkit import Model

    m = Model(str(tiny_detector.ckpt_path))

    def track(video):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = m.track(str(video), project=str(tmp_path / "out"), save=True, save_txt=True, imgsz=64, verbose=False)
        assert [r["frame"] for r in res] == list(range(1, len(res) + 1))  # the tracker's own count runs on
        saved = json.loads((res.save_dir / "predictions.json").read_text())
        assert [r["image"] for r in saved] == [r["image"] for r in res]
        assert frames_in(res.save_dir / f"{video.stem}.mp4") == len(res)
        return [int(r["image"].rpartition("#")[2]) for r in res], [str(w.message) for w in caught]

    broken = tmp_path / "broken.avi"
    start, length = write_avi(broken, n=20)[5]
    data = bytearray(broken.read_bytes())
    data[start : start + length] = b"\0" * length  # frame 5's JPEG data gone; the container is intact
    broken.write_bytes(bytes(data))
    indices, said = track(broken)
    assert indices == [i for i in range(20) if i != 5]
    assert any(f"'{broken}': frame 5 could not be decoded and was skipped" in s for s in said), said

    cut = tmp_path / "cut.avi"
    chunks = write_avi(cut, n=20)
    cut.write_bytes(cut.read_bytes()[: chunks[15][0] + 10])  # cut inside frame 15
    indices, said = track(cut)
    assert indices == list(range(15))
    assert any(f"'{cut}' is cut off or damaged from frame 15" in s for s in said), said


@pytest.mark.slow
def test_instance_track_gives_ids_to_objects_with_masks(tmp_path, tmp_path_factory):
    """`visionkit instance track`: the same ids in predictions.json and MOTChallenge rows, each tracked object's
    mask with it, and a video painted by identity."""
    from tests.conftest import train_tiny
    from visionkit.data.synthetic import generate_shapes

    root = generate_shapes(tmp_path_factory.mktemp("i") / "shapes", n_train=16, n_val=8, size=48, verbose=False)
    model = train_tiny("instance", "yolo-n-seg", root, tmp_path_factory)
    clip = make_clip(seed=2, frames=8, size=64, objects=2)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for f in clip["frames"]:
        writer.write(f)
    writer.release()
    settings = tmp_path / "low.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "tracker_type": "bytetrack",
                "track_high_thresh": 0.002,
                "track_low_thresh": 0.001,
                "new_track_thresh": 0.002,
            }
        )
    )
    r = run_cli(
        "instance",
        "track",
        f"model={model.ckpt_path}",
        f"source={video}",
        f"tracker={settings}",
        "conf=0.001",
        "max_det=5",
        "save",
        "save_txt",
        f"project={tmp_path}",
        "imgsz=64",
        "name=t",
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "instance" / "t"
    frames = json.loads((out / "predictions.json").read_text())
    assert [f["frame"] for f in frames] == list(range(1, 9))
    tracked = [d for f in frames for d in f["detections"] if d["id"] is not None]
    assert tracked and all(d["mask"]["size"] == [64, 64] for d in tracked)
    rows = (out / "tracks" / "clip.txt").read_text().splitlines()
    assert len(rows) == len(tracked)
    assert cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 8

#!/usr/bin/env python
"""Benchmark: visionkit `detect track` (ByteTrack, BoT-SORT) against Ultralytics `track` on generated clips.

    python tools/bench_track.py [--epochs 10] [--imgsz 160] [--frames 60] [--train-clips 8] [--track-clips 2]
                                [--venv /work/peer/.venv-ultralytics] [--oracle]

Clips with known identities (visionkit.data.clips: shapes moving, crossing and occluding one another, every other
clip with a panning camera) give a detection dataset and MOTChallenge sequences the detectors never saw. visionkit
yolo-n and Ultralytics yolov8n.yaml are trained from scratch for the same epochs on the same frames; each tracks the
sequences with its own detector and its own ByteTrack and BoT-SORT (Ultralytics' without ReID, its default), at the
same detection threshold. Every result is scored by the same evaluation (TrackEval HOTA, py-motmetrics MOTA/IDF1/ID
switches). Speed: frames per second of detection + tracking at batch 1, and the tracker's time as a share of the
detector's (visionkit: timed per frame; Ultralytics: its track run minus a predict run on the same frames).
Ultralytics (AGPL-3.0) runs in its own virtualenv as a separate process; it is never a visionkit dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

UL_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from ultralytics import YOLO
a = json.loads(sys.argv[1])
model = YOLO("yolov8n.yaml")
t0 = time.perf_counter()
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], workers=a["workers"],
            device="cpu", plots=False, seed=0, amp=False, pretrained=False, project=a["project"], name="train",
            exist_ok=True, verbose=False, val=True, close_mosaic=a["close_mosaic"])
wall = time.perf_counter() - t0
out = {"train_wall": wall, "seqs": {}}
for seq in a["seqs"]:
    frames = sorted(str(p) for p in Path(seq, "img1").glob("*.jpg"))
    best = YOLO(a["project"] + "/train/weights/best.pt")
    t = time.perf_counter()
    for f in frames:
        best.predict(f, imgsz=a["imgsz"], conf=a["conf"], device="cpu", verbose=False)
    predict_s = time.perf_counter() - t
    res = {"predict_s": predict_s}
    for tracker in ("bytetrack", "botsort"):
        model = YOLO(a["project"] + "/train/weights/best.pt")
        rows = []
        t = time.perf_counter()
        for k, f in enumerate(frames, 1):
            r = model.track(f, imgsz=a["imgsz"], conf=a["conf"], device="cpu", verbose=False, persist=True,
                            tracker=tracker + ".yaml")[0]
            if r.boxes.id is None:
                continue
            for (x1, y1, x2, y2), i, s in zip(r.boxes.xyxy.tolist(), r.boxes.id.tolist(), r.boxes.conf.tolist()):
                rows.append(f"{k},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.5f},-1,-1,-1")
        res[tracker] = {"seconds": time.perf_counter() - t, "rows": rows, "frames": len(frames)}
    out["seqs"][seq] = res
print("BENCH_RESULT " + json.dumps(out))
"""


def oracle(a) -> None:
    """Trackers alone: detections are the clips' ground-truth boxes, jittered (σ 1.5 px), scores 0.3-0.95, 10 % of
    boxes dropped and objects under 25 % visible unseen: identity quality and time per frame without a detector."""
    import time as _time

    from visionkit.data.clips import gt_rows, make_clip
    from visionkit.track import build_tracker
    from visionkit.track.mot import evaluate_mot, mot_row

    rng = np.random.default_rng(0)
    table: dict[str, list[dict]] = {}
    for k in range(a.track_clips):
        clip = make_clip(100 + k, a.frames, a.size, 4, pan=1.0 * (k % 2))
        dets_per_frame = []
        for objs in clip["tracks"]:
            rows = [
                [*(np.asarray(o["box"]) + rng.normal(0, 1.5, 4)), rng.uniform(0.3, 0.95), o["cls"]]
                for o in objs
                if o["visibility"] >= 0.25 and rng.uniform() > 0.1
            ]
            dets_per_frame.append(np.asarray(rows).reshape(-1, 6))
        gt: dict = {}
        for r in gt_rows(clip):
            v = [float(x) for x in r.split(",")]
            gt.setdefault(int(v[0]), []).append([v[1], *v[2:7]])
        gt = {f: np.asarray(v) for f, v in gt.items()}
        for name in ("bytetrack", "botsort"):
            tracker = build_tracker(name)
            pred: dict = {}
            t0 = _time.perf_counter()
            outs = [tracker.update(d, f) for d, f in zip(dets_per_frame, clip["frames"])]
            ms = 1000 * (_time.perf_counter() - t0) / len(outs)
            for o in outs:
                for t in o.tracks:
                    v = [float(x) for x in mot_row(o.frame, t.id, t.box, t.score).split(",")]
                    pred.setdefault(o.frame, []).append(v[1:7])
            m = evaluate_mot(gt, {f: np.asarray(v) for f, v in pred.items()})
            table.setdefault(name, []).append({**m, "ms": ms})
    print(f"oracle detections, {a.track_clips} clips of {a.frames} frames at {a.size} px (every other one panning):")
    print(f"{'':<12}" + "".join(f"{c:>9}" for c in ("HOTA", "IDF1", "MOTA", "IDSW", "ms/frame")))
    for name, rows in table.items():
        vals = [np.mean([r[c] for r in rows]) for c in ("HOTA", "IDF1", "MOTA", "IDSW", "ms")]
        print(f"{name:<12}" + "".join(f"{v:>9.3f}" for v in vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--size", type=int, default=160, help="clip frame size (pixels)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--train-clips", type=int, default=8)
    ap.add_argument("--track-clips", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--close-mosaic", type=int, default=2)
    ap.add_argument("--conf", type=float, default=0.1, help="detection threshold for both (ByteTrack's low one)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--venv", default="/work/peer/.venv-ultralytics")
    ap.add_argument("--skip-ultralytics", action="store_true")
    ap.add_argument("--oracle", action="store_true", help="only the trackers, on jittered ground-truth boxes")
    a = ap.parse_args()
    if a.oracle:
        return oracle(a)

    import torch

    torch.set_num_threads(a.threads)
    from bench_detect import ensure_ultralytics

    from visionkit import Model
    from visionkit.data.clips import generate_clips
    from visionkit.track.mot import evaluate_mot, read_mot

    work = Path(tempfile.mkdtemp(prefix="vk-bench-track-"))
    root = generate_clips(work / "clips", a.train_clips, 2, a.track_clips, a.frames, a.size, verbose=True)
    spec = yaml.safe_load((root / "data.yaml").read_text())
    seqs = [root / "seqs" / s for s in spec["sequences"]]
    print(f"work dir {work}; {len(seqs)} sequences of {a.frames} frames; epochs {a.epochs}, imgsz {a.imgsz}")

    model = Model("yolo-n")
    t0 = time.perf_counter()
    model.train(
        data=str(root / "data.yaml"),
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        project=str(work / "vk"),
        close_mosaic=a.close_mosaic,
        plots=False,
        verbose=False,
        seed=0,
        patience=0,
    )
    vk_train = time.perf_counter() - t0
    print(f"visionkit trained in {vk_train:.0f} s")
    table: dict[str, list[dict]] = {}
    for tracker in ("bytetrack", "botsort"):
        for seq in seqs:
            m = Model(str(model.ckpt_path))
            res = m.track(
                str(seq / "img1"),
                tracker=tracker,
                imgsz=a.imgsz,
                conf=a.conf,
                gt=str(seq / "gt" / "gt.txt"),
                verbose=False,
                project=str(work / "vk"),
                name=f"{tracker}_{seq.name}",
                device="cpu",
            )
            table.setdefault(f"visionkit {tracker}", []).append(
                {**res.metrics, "fps": res.speed["fps"], "overhead": res.speed["tracker_overhead_pct"]}
            )

    cols = [
        ("HOTA", "{:.4f}"),
        ("IDF1", "{:.4f}"),
        ("MOTA", "{:.4f}"),
        ("IDSW", "{:.1f}"),
        ("fps", "{:.1f}"),
        ("overhead", "{:.1f}"),
    ]

    def show() -> None:
        print(f"\nmean over {len(seqs)} sequences (tracker overhead: % of the detector's time per frame)")
        print(f"{'':<24}" + "".join(f"{c:>11}" for c, _ in cols))
        for name, rows in table.items():
            print(f"{name:<24}" + "".join(f"{fmt.format(np.mean([r[c] for r in rows])):>11}" for c, fmt in cols))

    show()  # visionkit's figures first: Ultralytics' training may take long
    if not a.skip_ultralytics:
        py = ensure_ultralytics(Path(a.venv), extra=("lap",))
        ul_yaml = work / "data_ultralytics.yaml"
        ul_yaml.write_text(
            yaml.safe_dump({"path": str(root), "train": spec["train"], "val": spec["val"], "names": spec["names"]})
        )
        args = {
            "data": str(ul_yaml),
            "epochs": a.epochs,
            "imgsz": a.imgsz,
            "batch": a.batch,
            "workers": a.workers,
            "project": str(work / "ul"),
            "close_mosaic": a.close_mosaic,
            "conf": a.conf,
            "seqs": [str(s) for s in seqs],
        }
        env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads), "YOLO_VERBOSE": "False"}
        proc = subprocess.run(
            [str(py), "-c", UL_SCRIPT, json.dumps(args)], env=env, capture_output=True, text=True, cwd=work
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"Ultralytics run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        ul = json.loads(line.split(" ", 1)[1])
        print(f"Ultralytics trained in {ul['train_wall']:.0f} s")
        for seq in seqs:
            r = ul["seqs"][str(seq)]
            for tracker in ("bytetrack", "botsort"):
                t = r[tracker]
                path = work / f"ul_{tracker}_{seq.name}.txt"
                path.write_text("".join(x + "\n" for x in t["rows"]))
                pred = read_mot(path) if t["rows"] else {}
                metrics = evaluate_mot(read_mot(seq / "gt" / "gt.txt"), pred)
                overhead = 100 * (t["seconds"] - r["predict_s"]) / r["predict_s"]
                table.setdefault(f"Ultralytics {tracker}", []).append(
                    {**metrics, "fps": t["frames"] / t["seconds"], "overhead": overhead}
                )

    show()


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Run a visionkit detector exported with ``nms=True`` using nothing but onnxruntime, OpenCV and NumPy, as on a
camera or an edge box where visionkit itself is not installed.

    visionkit export model=runs/detect/train/weights/best.pt nms dynamic
    python examples/onnxruntime_detect.py runs/detect/train/weights/best.onnx image.jpg [more.jpg ...]

Prints one JSON line per image: {"image", "detections": [{"class", "name", "score", "box": [x1, y1, x2, y2]}]}
with boxes in the original image's pixels. Everything the file needs (class names, image size) is read from
its metadata.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import onnxruntime as ort


def letterbox(img: np.ndarray, size: int, stride: int, snug: bool) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Long side to ``size`` keeping the aspect ratio, centred on a grey (114) canvas: size×size, or with
    ``snug`` (a dynamic file) the short side only rounded up to the stride — less padding, less work."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    out_h, out_w = (-(-nh // stride) * stride, -(-nw // stride) * stride) if snug else (size, size)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
    top, left = (out_h - nh) // 2, (out_w - nw) // 2
    canvas = np.full((out_h, out_w, 3), 114, np.uint8)
    canvas[top : top + nh, left : left + nw] = img
    return canvas, r, (left, top)


def detect(session: ort.InferenceSession, bgr: np.ndarray, imgsz: int, stride: int, names: list[str]) -> list[dict]:
    dynamic = not all(isinstance(d, int) for d in session.get_inputs()[0].shape[2:])
    canvas, scale, (left, top) = letterbox(bgr, imgsz, stride, snug=dynamic)
    x = canvas[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255  # BGR→RGB, HWC→CHW, 0..1
    if session.get_inputs()[0].type == "tensor(float16)":  # exported with half=True
        x = x.astype(np.float16)
    table, count = session.run(None, {session.get_inputs()[0].name: x})
    h, w = bgr.shape[:2]
    found = []
    for x1, y1, x2, y2, score, cls in table[0, : int(count[0])]:
        box = [
            float(np.clip((x1 - left) / scale, 0, w)),
            float(np.clip((y1 - top) / scale, 0, h)),
            float(np.clip((x2 - left) / scale, 0, w)),
            float(np.clip((y2 - top) / scale, 0, h)),
        ]
        found.append(
            {
                "class": int(cls),
                "name": names[int(cls)],
                "score": round(float(score), 5),
                "box": [round(v, 2) for v in box],
            }
        )
    return found


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    session = ort.InferenceSession(argv[0], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "nms" not in meta:
        sys.exit(f"{argv[0]} has no NMS in its graph: export it with `visionkit export model=... nms`")
    names, imgsz, stride = json.loads(meta["names"]), int(meta["imgsz"]), int(meta["stride"])
    for path in argv[1:]:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"cannot read image '{path}'")
        print(json.dumps({"image": path, "detections": detect(session, img, imgsz, stride, names)}))


if __name__ == "__main__":
    main(sys.argv[1:])

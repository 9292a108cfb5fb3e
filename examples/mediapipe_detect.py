#!/usr/bin/env python
"""Run a visionkit detector exported for MediaPipe with nothing but MediaPipe Tasks (and OpenCV to read the
image), exactly as an app on a phone or a camera would: MediaPipe reads the labels and input size from the
file's metadata, resizes the image to the input (a stretch, no letterbox) and, for a file exported without
``nms=True``, runs NMS itself.

    visionkit export model=runs/detect/train/weights/best.pt format=mediapipe nms=True
    python examples/mediapipe_detect.py runs/detect/train/weights/best.tflite image.jpg

Prints a JSON list: [{"name", "score", "box": [x1, y1, x2, y2]}] in the image's pixels (whole pixels, as
MediaPipe reports them)."""

from __future__ import annotations

import json
import sys

import cv2
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision


def detect(model_path: str, image_path: str, score_threshold: float = 0.0, max_results: int = -1) -> list[dict]:
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=model_path), score_threshold=score_threshold, max_results=max_results
    )
    rgb = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
    rows = []
    for d in result.detections:
        b = d.bounding_box
        for c in d.categories:  # detections that share one box come back as one Detection with several categories
            rows.append(
                {
                    "name": c.category_name,
                    "score": round(c.score, 6),
                    "box": [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height],
                }
            )
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: mediapipe_detect.py MODEL.tflite IMAGE")
    print(json.dumps(detect(sys.argv[1], sys.argv[2])))

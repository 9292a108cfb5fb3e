"""The built-in writers: importing this registers them (kind ``export_format``)."""

from visionkit.export import mediapipe, onnx, openvino  # noqa: F401

"""The built-in backends for exported files: importing this registers them (kind ``runtime``)."""

from visionkit.runtime import mediapipe_backend, onnx_backend, openvino_backend  # noqa: F401

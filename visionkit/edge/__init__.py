"""Edge deployment: .tflite files for MediaPipe Tasks (graphs, conversion with litert-torch, metadata, export and
its check against PyTorch)."""

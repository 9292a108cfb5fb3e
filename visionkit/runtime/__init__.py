"""Inference backends below the engine: PyTorch modules, and exported files run by onnxruntime."""

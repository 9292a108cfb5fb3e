#!/usr/bin/env python
"""Benchmark: how much faster can an int8 ONNX file be than its float one on this CPU? One convolution (+ ReLU)
per row, float against int8 made as ``export int8=True`` makes them (onnxruntime's static QDQ quantisation, uint8
activations, int8 weights with one scale per output channel, min/max calibration), timed in alternation, call by
call, by onnxruntime at batch 1.

    python tools/bench_int8_ceiling.py [--threads 1] [--runs 50]

The large rows (64-256 channels) are compute-bound: their ratio is the ceiling an int8 model can reach here,
whatever its architecture. The small rows (12-32 channels, the first stages of a nano detector) show where int8
kernels lose to their overheads. A CPU with an int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI, AMX, ARM dot
product) should show about 0.5x or less on the large rows; an AVX2-only CPU about 1.0x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

# (input channels, output channels, kernel, height = width)
SHAPES = [
    (12, 12, 3, 80),
    (16, 16, 3, 80),
    (24, 24, 3, 80),
    (32, 32, 3, 80),
    (64, 64, 3, 80),
    (128, 128, 3, 40),
    (256, 256, 1, 40),
    (256, 256, 3, 20),
]


def conv_model(cin: int, cout: int, k: int, hw: int, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((cout, cin, k, k)) * (2.0 / (cin * k * k)) ** 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[k // 2] * 4, name="conv"),
        helper.make_node("Relu", ["conv"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, hw, hw])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


class Calibration:
    """onnxruntime's CalibrationDataReader protocol over a few random images in [0, 1)."""

    def __init__(self, shape):
        self.batches = iter([{"x": np.random.default_rng(i).random(shape, dtype=np.float32)} for i in range(4)])

    def get_next(self):
        return next(self.batches, None)


def quantize(path: Path, out: Path, shape) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(path),
        str(out),
        Calibration(shape),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def runner(path: Path, shape, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # two sessions timed in alternation
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(9).random(shape, dtype=np.float32)}
    return lambda: session.run(None, feed)


def main() -> None:
    import logging

    from bench_export import interleaved_ms

    from visionkit.engine.cpu_features import cpu_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's pre-processing advice, once per row
    print(f"CPU: {cpu_features().describe()}; onnxruntime, batch 1, {a.threads} thread(s), median of {a.runs}")
    print(f"{'convolution':<26} {'float ms':>9} {'int8 ms':>9} {'int8 / float':>13}")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="vk-int8-ceiling-") as tmp:
        for cin, cout, k, hw in SHAPES:
            shape = (1, cin, hw, hw)
            path, qpath = Path(tmp) / f"c{cin}_{k}_{hw}.onnx", Path(tmp) / f"c{cin}_{k}_{hw}_int8.onnx"
            conv_model(cin, cout, k, hw, path)
            quantize(path, qpath, shape)
            f, q = interleaved_ms([runner(path, shape, a.threads), runner(qpath, shape, a.threads)], a.runs)
            ratios.append((cin, q / f))
            print(f"{f'{cin}->{cout} k{k} at {hw}x{hw}':<26} {f:>9.3f} {q:>9.3f} {q / f:>13.2f}")
    large = [r for c, r in ratios if c >= 64]
    print(f"ceiling (rows with >= 64 channels): int8 / float {min(large):.2f}-{max(large):.2f}")


if __name__ == "__main__":
    main()

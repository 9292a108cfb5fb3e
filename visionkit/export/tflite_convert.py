"""PyTorch module → .tflite bytes with litert-torch, and the optional weight compression of the written graph with
ai-edge-quantizer (installed with litert-torch): fp16 weights, or int8 post-training quantisation calibrated on
real images."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from visionkit.errors import UsageError

INSTALL_HINT = (
    "MediaPipe export needs the optional extra: pip install 'visionkit[mediapipe]' (litert-torch and "
    "mediapipe; `make edge` builds .venv-edge with them)"
)


def require_edge_packages() -> None:
    """Fail with the install command when litert-torch or mediapipe is missing."""
    missing = [name for name in ("litert_torch", "mediapipe") if not _importable(name)]
    if missing:
        raise UsageError(f"{' and '.join(missing)} not installed. {INSTALL_HINT}")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _quiet():
    """litert-torch and ai-edge-quantizer print progress lines and warnings; keep them out of the user's console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def to_tflite(graph: torch.nn.Module, sample: torch.Tensor) -> bytes:
    """Convert ``graph`` traced on ``sample`` (1, H, W, 3) to a float32 .tflite flatbuffer."""
    with _quiet():
        import litert_torch

        litert_torch.config.show_progress = False
        edge = litert_torch.convert(graph.eval(), (sample,))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            edge.export(str(path))
            return path.read_bytes()


def fp16_weights(model: bytes) -> bytes:
    """Weights stored as float16 (half the size), computed in float32."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(bytearray(model))
    q.update_quantization_recipe(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
    )
    with _quiet():
        return bytes(q.quantize(enable_progress_report=False).quantized_model)


def int8_static(model: bytes, calibration: Iterable[np.ndarray]) -> bytes:
    """Post-training static quantisation: int8 weights (per channel) and int8 activations whose ranges are
    measured on ``calibration`` inputs (each (1, H, W, 3) float32 as the graph takes them). Float input and
    output tensors are kept, so MediaPipe feeds and reads the file as before."""
    from ai_edge_quantizer import quantizer, recipe

    samples = [{"args_0": np.asarray(x, np.float32)} for x in calibration]
    if not samples:
        raise UsageError("int8=True needs calibration images: pass data= (its train split is sampled)")
    from ai_edge_quantizer import algorithm_manager, qtyping

    q = quantizer.Quantizer(bytearray(model), recipe.static_wi8_ai8())
    # MediaPipe feeds and reads float (or uint8) tensors: the ops that take the graph's input (the normalisation)
    # and those that write its outputs stay float, with quantize/dequantize ops inserted after and before them
    for regex in (".*EdgeInput.*", "serving_default_.*"):
        q.update_quantization_recipe(
            regex=regex,
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE,
        )
    signature, name = _signature_input(model)
    samples = [{name: s["args_0"]} for s in samples]
    with _quiet():
        result = q.calibrate({signature: samples}, num_threads=1)
        return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


def _signature_input(model: bytes) -> tuple[str, str]:
    """The graph's signature key and the name of its one input."""
    from ai_edge_litert import interpreter as tfl

    signatures = tfl.Interpreter(model_content=model).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def inline_buffers(model: bytes) -> bytes:
    """``model`` with every weight buffer inside the flatbuffer. ai-edge-quantizer stores buffers after the
    flatbuffer (offset/size fields) for larger models; MediaPipe's metadata writer rebuilds the flatbuffer and
    would drop them."""
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    external = [b for b in m.buffers or [] if b.offset > 1]
    if not external:
        return model
    for b in external:
        b.data = np.frombuffer(model, np.uint8, count=b.size, offset=b.offset).copy()
        b.offset, b.size = 0, 0
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

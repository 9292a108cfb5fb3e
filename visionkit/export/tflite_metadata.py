"""TFLite model metadata that MediaPipe Tasks read (labels, normalisation, detector layout), plus a ``visionkit``
record (task, names, sizes, model config) stored as a named buffer of the same flatbuffer.

MediaPipe's own metadata writers are used. In mediapipe 1.x they fail to import: the native helper
``_pywrap_metadata_version`` (it computes the metadata's minimum parser version) is missing from the wheels. This
module registers a pure-Python replacement before importing them; the version rules come from the "Added in"
notes of the metadata schema (metadata_schema.fbs, schema version 1.5.0)."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

RECORD_NAME = "visionkit"  # name of the flatbuffer metadata entry holding visionkit's own record
_SHIM = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def minimum_parser_version(metadata_buf: bytes) -> str:
    """The oldest metadata parser that understands ``metadata_buf`` (a ``ModelMetadata`` flatbuffer): the highest
    "Added in" version among the schema features it uses."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytes(metadata_buf), 0))
    needed = [(1, 0, 0)]
    files = list(md.associatedFiles or [])
    for sg in md.subgraphMetadata or []:
        files += list(sg.associatedFiles or [])
        if sg.inputProcessUnits or sg.outputProcessUnits:
            needed.append((1, 1, 0))
        if sg.inputTensorGroups or sg.outputTensorGroups:
            needed.append((1, 2, 0))
        if sg.customMetadata:
            needed.append((1, 5, 0))
        units = list(sg.inputProcessUnits or []) + list(sg.outputProcessUnits or [])
        for tensor in list(sg.inputTensorMetadata or []) + list(sg.outputTensorMetadata or []):
            files += list(tensor.associatedFiles or [])
            units += list(tensor.processUnits or [])
            content = tensor.content
            if content is not None and content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                needed.append((1, 3, 0))
        for unit in units:
            kind = unit.optionsType
            options = fb.ProcessUnitOptions
            if kind in (options.BertTokenizerOptions, options.SentencePieceTokenizerOptions):
                needed.append((1, 1, 0))
            elif kind == options.RegexTokenizerOptions:
                needed.append((1, 2, 1))
    for f in files:
        if f.type == fb.AssociatedFileType.VOCABULARY:
            needed.append((1, 0, 1))
        elif f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
            needed.append((1, 4, 0))
        if f.version:
            needed.append((1, 4, 1))
    return ".".join(str(v) for v in max(needed))


def writers():
    """MediaPipe's metadata writer modules (as attributes), with the missing native helper replaced."""
    if _SHIM not in sys.modules:
        try:
            importlib.import_module(_SHIM)
        except ImportError:
            _register_shim()
    base = "mediapipe.tasks.python.metadata.metadata_writers."
    return types.SimpleNamespace(
        **{
            name: importlib.import_module(base + name)
            for name in ("metadata_writer", "metadata_info", "image_classifier", "image_segmenter", "object_detector")
        }
    )


def _register_shim() -> None:
    """Put the replacement module, and any missing parent package, in ``sys.modules``."""
    parts = _SHIM.split(".")
    for depth in range(3, len(parts) + 1):  # from mediapipe.tasks.cc down; mediapipe.tasks exists
        name = ".".join(parts[:depth])
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass
        module = types.ModuleType(name)
        if depth < len(parts):
            module.__path__ = []  # a package, so the next level can be imported from it
        else:
            module.GetMinimumMetadataParserVersion = minimum_parser_version
        sys.modules[name] = module
        setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], module)


def _labels(names: list[str]):
    mw = writers().metadata_writer
    labels = mw.Labels()
    labels.add(list(names))
    return labels


# MediaPipe feeds a float input (pixel - mean) / std and refuses per-channel values: mean 0 / std 255 hands the
# graph RGB in 0..1, and the graph applies the model's own per-channel normalisation itself.
INPUT_MEAN, INPUT_STD = [0.0], [255.0]


def write_classifier(model: bytes, names: list[str]) -> bytes:
    w = writers()
    writer = w.image_classifier.MetadataWriter.create(bytearray(model), INPUT_MEAN, INPUT_STD, _labels(names))
    buf, _ = writer.populate()
    return bytes(buf)


def write_segmenter(model: bytes, names: list[str] | None, activation: str) -> bytes:
    """``activation``: SOFTMAX (class logits; confidence masks are probabilities) or NONE (raw values, e.g. depth)."""
    seg = writers().image_segmenter
    labels = _labels(names) if names else None
    buf, _ = seg.MetadataWriter.create(
        bytearray(model), INPUT_MEAN, INPUT_STD, labels=labels, activation=getattr(seg.Activation, activation)
    ).populate()
    return bytes(buf)


def write_detector(model: bytes, names: list[str], num_boxes: int) -> bytes:
    """Two outputs, locations (1, N, 4: y_center, x_center, h, w normalised) then scores (1, N, C): MediaPipe
    decodes with anchors (0, 0, 1, 1) and unit scales (the identity) and runs NMS itself."""
    od = writers().object_detector
    info = writers().metadata_info
    anchors = od.SsdAnchorsOptions(od.FixedAnchorsSchema([od.FixedAnchor(0.0, 0.0, 1.0, 1.0)] * num_boxes))
    decoding = od.TensorsDecodingOptions(
        num_classes=len(names),
        num_boxes=num_boxes,
        num_coords=4,
        keypoint_coord_offset=0,
        num_keypoints=0,
        num_values_per_keypoint=2,
        x_scale=1.0,
        y_scale=1.0,
        w_scale=1.0,
        h_scale=1.0,
        apply_exponential_on_box_size=False,
        sigmoid_score=False,
    )
    writer = od.MetadataWriter.create_for_models_without_nms(
        bytearray(model),
        INPUT_MEAN,
        INPUT_STD,
        _labels(names),
        anchors,
        decoding,
        output_tensors_order=info.RawDetectionOutputTensorsOrder.LOCATION_SCORE,
    )
    buf, _ = writer.populate()
    return bytes(buf)


def write_detector_nms(model: bytes, names: list[str], order: list[str]) -> bytes:
    """Four outputs in the post-processing layout. ``order[i]`` names what output position i holds: 'location',
    'category', 'score' or 'count'. MediaPipe's writer pairs its four tensor descriptions with the outputs sorted
    by internal tensor index, which need not be output order; the descriptions are written here in output order
    instead, so each one sits on the tensor it describes."""
    w = writers()
    info, mw = w.metadata_info, w.metadata_writer
    od = w.object_detector
    writer = mw.MetadataWriter(bytearray(model))
    writer.add_general_info("ObjectDetector", "visionkit detector with NMS in the graph")
    writer.add_image_input(INPUT_MEAN, INPUT_STD)
    dim = info.ValueRangeMd(min_value=2, max_value=2)
    label_files = writer._create_label_file_md(_labels(names))
    mds = {
        "location": info.LocationTensorMd(
            name="location", description="The locations of the detected boxes.", content_range_md=dim
        ),
        "category": info.CategoryTensorMd(
            name="category",
            description="The categories of the detected boxes.",
            label_files=label_files,
            content_range_md=dim,
        ),
        "score": info.ClassificationTensorMd(
            name="score", description="The scores of the detected boxes.", content_range_md=dim
        ),
        "count": info.TensorMd(name="number of detections", description="The number of the detected boxes."),
    }
    if sorted(order) != sorted(mds):
        raise ValueError(f"output order {order} must name location, category, score and count once each")
    writer._output_mds.extend(mds[k] for k in order)
    writer._output_group_mds.append(
        info.TensorGroupMd(name="detection_result", tensor_names=["location", "category", "score"])
    )
    buf, _ = od.MetadataWriter(writer).populate()
    return bytes(buf)


def output_descriptions(model: bytes) -> list[str]:
    """The metadata name of each output tensor, in output order (to check the pairing)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = _tflite_metadata(model)
    if md is None:
        return []
    sg = fb.ModelMetadata.GetRootAsModelMetadata(md, 0).SubgraphMetadata(0)
    return [sg.OutputTensorMetadata(i).Name().decode() for i in range(sg.OutputTensorMetadataLength())]


def _tflite_metadata(model: bytes) -> bytes | None:
    return _named_buffer(model, "TFLITE_METADATA")


def _named_buffer(model: bytes, name: str) -> bytes | None:
    from mediapipe.tasks.metadata import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(model, 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if entry.Name() and entry.Name().decode() == name:
            return m.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def add_record(model: bytes, record: dict[str, Any]) -> bytes:
    """``model`` with visionkit's record (JSON) as a named metadata buffer. Call before MediaPipe's writer, which
    keeps other metadata entries and appends its label files after the flatbuffer."""
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    data = json.dumps(record).encode()
    buffer = schema.BufferT()
    buffer.data = list(data)
    m.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = RECORD_NAME, len(m.buffers) - 1
    m.metadata = [e for e in (m.metadata or []) if e.name not in (RECORD_NAME, RECORD_NAME.encode())] + [entry]
    builder = flatbuffers.Builder(len(model) + len(data) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_record(path: str | Path) -> dict[str, Any] | None:
    """visionkit's record from a .tflite file, or None when the file has none."""
    raw = _named_buffer(Path(path).read_bytes(), RECORD_NAME)
    return json.loads(raw.decode()) if raw is not None else None


def has_mediapipe_metadata(path: str | Path) -> bool:
    return _tflite_metadata(Path(path).read_bytes()) is not None


def output_shapes(model: bytes) -> list[list[int]]:
    """The shape of each output of a .tflite flatbuffer, in output order."""
    from ai_edge_litert import interpreter as tfl

    return [[int(d) for d in o["shape"]] for o in tfl.Interpreter(model_content=model).get_output_details()]

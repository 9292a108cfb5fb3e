"""The one exporter: finds the writer of a format in the registry (kind ``export_format``) and hands it the
network, the task and the settings. A format is added by registering a writer class with ``suffix`` (the file's),
``size_pair`` (True: imgsz may be height,width), ``defaults`` (settings that differ for this format) and
``write(net, task, ckpt, args, out, score_file) -> Path``; ``score_file(path, **overrides)`` validates a written
file (for the metric change of a compressed file) without the writer importing the API above it."""

from __future__ import annotations

import difflib
from typing import Any

from visionkit.errors import UsageError
from visionkit.registry import REGISTRY

ALIASES = {"tflite": "mediapipe"}  # a .tflite for MediaPipe Tasks is the only TFLite file visionkit writes


def writer_for(fmt: str) -> Any:
    """The writer of ``fmt`` (a name or alias, any case, with or without a dot); an unknown one raises with the
    formats there are and the closest one."""
    name = str(fmt).lower().lstrip(".")
    name = ALIASES.get(name, name)
    if not REGISTRY.contains("export_format", name):
        known = formats()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        aliases = ", ".join(f"{a} = {b}" for a, b in ALIASES.items())
        raise UsageError(f"unsupported export format '{name}'.{hint} Formats: {', '.join(known)} ({aliases})")
    return REGISTRY.build("export_format", name)


def formats() -> list[str]:
    return REGISTRY.available("export_format")

"""``visionkit serve labelstudio model=best.pt [port=9090 host=127.0.0.1 ...]``: the Label Studio ML backend."""

from __future__ import annotations

import logging
import socket
from typing import Any

from visionkit.cfg import Range, Settings, check_overrides
from visionkit.errors import UsageError

KEYS: dict[str, dict[str, tuple[Any, str]]] = {
    "labelstudio": {
        "model": (None, "trained model: best.pt, or an exported .onnx / .tflite"),
        "host": ("127.0.0.1", "address to listen on (0.0.0.0: every interface; the server has no authentication)"),
        "port": (9090, "port to listen on (Label Studio's ML backend default)"),
        "conf": (None, "confidence threshold of the regions sent (default: the task's own, e.g. 0.25 for boxes)"),
        "device": ("", "cpu, 0, mps, ... (default: the best available)"),
        "batch": (8, "tasks predicted per batch (and images held in memory at once)"),
        "imgsz": (None, "input size (default: the model's)"),
        "names_map": (None, "model class → config label, e.g. car:Car,person:Pedestrian"),
        "images": (None, "folder holding the tasks' images (else they are fetched from Label Studio or by URL)"),
        "url": (None, "Label Studio URL for images (default: what /setup sends, or $LABEL_STUDIO_URL)"),
        "token": (None, "Label Studio token for images (default: what /setup sends, or $LABEL_STUDIO_API_KEY)"),
        "log_level": ("info", "debug, info, warning or error"),
    },
}


RULES = {
    "port": Range(int, 1, 65535),
    "conf": Range(float, 0, 1),
    "batch": Range(int, 1, 4096),
    "log_level": ("debug", "info", "warning", "error"),
}


def serve_labelstudio(**overrides) -> None:
    """Load the model once and serve the ML backend protocol until interrupted."""
    defaults = {k: v for k, (v, _) in KEYS["labelstudio"].items()}
    args = Settings(
        {
            **defaults,
            **check_overrides(overrides, defaults, source="key for `visionkit serve labelstudio`", rules=RULES),
        }
    )
    if not args.model:
        raise UsageError("`visionkit serve labelstudio` needs model=  (a best.pt, .onnx or .tflite)")
    try:
        import uvicorn

        from visionkit.serve.app import create_app
    except ImportError as e:
        raise UsageError(f"serving needs starlette and uvicorn: pip install 'visionkit[serve]' ({e})") from e
    from visionkit.serve.prelabeler import PreLabeler

    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labeler = PreLabeler(
        args.model,
        conf=args.conf,
        device=args.device or None,
        batch=args.batch,
        names_map=args.names_map,
        images=args.images,
        url=args.url,
        token=args.token,
        imgsz=args.imgsz,
    )
    host, port = str(args.host), args.port
    _check_port(host, port)
    print(
        f"visionkit ML backend for Label Studio: {labeler.task} model {labeler.model_version} "
        f"({len(labeler.names)} classes) on http://{host}:{port}\n"
        f"  connect it in Label Studio: project → Settings → Model → Connect Model, URL http://{host}:{port}"
        + (
            "\n  (Label Studio refuses ML backends on 127.0.0.1 unless it runs with LABEL_STUDIO_ML_BLOCK_LOCAL_IP="
            "false)"
            if host.startswith("127.") or host == "localhost"
            else ""
        ),
        flush=True,
    )
    uvicorn.run(create_app(labeler), host=host, port=port, log_level=level.lower())


def _check_port(host: str, port: int) -> None:
    """A port in use is one clear line, not a traceback from inside the server."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pick another port=") from e


COMMANDS = {"labelstudio": serve_labelstudio}

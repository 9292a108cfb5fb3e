"""``visionkit serve labelstudio model=best.pt [port=9090 host=127.0.0.1 ...]``: the Label Studio ML backend."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from visionkit.cfg import Range, Settings, check_overrides
from visionkit.errors import UsageError

AUTH_ENV = "VISIONKIT_SERVE_AUTH"
KEYS: dict[str, dict[str, tuple[Any, str]]] = {
    "labelstudio": {
        "model": (None, "trained model: best.pt, or an exported .onnx / .xml (OpenVINO) / .tflite"),
        "host": ("127.0.0.1", "address to listen on (0.0.0.0: every interface; needs auth= or insecure=True)"),
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
        "auth": (None, f"user:password for HTTP Basic Auth (default: ${AUTH_ENV}); never printed"),
        "insecure": (
            False,
            "allow a non-loopback host without auth (with a warning)",
        ),
        "allow_hosts": (
            None,
            "hosts http(s) images may come from besides Label Studio: host, host:port, *.domain, "
            "IP/network, or * (any public host); comma-separated",
        ),
        "max_body_mb": (8.0, "largest request body in MB (413 beyond; read no further)"),
        "max_tasks": (1000, "most tasks in one /predict (413 beyond)"),
        "max_requests": (4, "requests handled at once (429 with Retry-After beyond); /health is not counted"),
    },
}
# keys whose text is taken as typed: a password like 1:30 or [x] must not be read as a number or a list
RAW_KEYS = {"auth"}


RULES = {
    "port": Range(int, 1, 65535),
    "conf": Range(float, 0, 1),
    "batch": Range(int, 1, 4096),
    "max_body_mb": Range(float, 0, 1024, open_low=True),
    "max_tasks": Range(int, 1, 1_000_000),
    "max_requests": Range(int, 1, 1024),
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
        raise UsageError("`visionkit serve labelstudio` needs model=  (a best.pt, .onnx, .xml or .tflite)")
    credentials = parse_auth(args.auth)
    host, port = str(args.host), args.port
    if credentials is None and not is_loopback(host):
        if not args.insecure:
            raise UsageError(
                f"refusing to listen on {host} without authentication: anyone who reaches the port could run the "
                f"model and make the server fetch images. Set {AUTH_ENV}=user:password (or auth=user:password) and "
                f"the same user and password in Label Studio's model settings (Authentication: Basic), or add "
                f"insecure=True on a network you trust"
            )
        print(
            f"WARNING: listening on {host} without authentication (insecure=True): anyone who can reach port {port} "
            f"can use this server",
            file=sys.stderr,
            flush=True,
        )
    from visionkit.serve.fetch import AllowList

    AllowList(args.allow_hosts)  # a bad entry fails now, before the model loads
    try:
        import uvicorn

        from visionkit.serve.app import Limits, create_app
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
        allow_hosts=args.allow_hosts,
    )
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
    print(
        "  authentication: HTTP Basic (credentials not shown)"
        if credentials
        else "  authentication: none (set auth= or $" + AUTH_ENV + " to require HTTP Basic Auth)",
        flush=True,
    )
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_tasks=args.max_tasks, max_requests=args.max_requests
    )
    uvicorn.run(create_app(labeler, limits, credentials), host=host, port=port, log_level=level.lower())


def parse_auth(value: Any) -> tuple[str, str] | None:
    """``auth=`` (else ``$VISIONKIT_SERVE_AUTH``) as (user, password); the value is never put in a message."""
    source = "auth="
    if value is None:
        value, source = os.environ.get(AUTH_ENV) or None, f"${AUTH_ENV}"
    if value is None:
        return None
    user, sep, password = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not user or not password:
        raise UsageError(f"{source} must be user:password (both non-empty; the password may contain ':')")
    return user, password


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def _check_port(host: str, port: int) -> None:
    """A port in use is one clear line, not a traceback from inside the server."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pick another port=") from e


COMMANDS = {"labelstudio": serve_labelstudio}

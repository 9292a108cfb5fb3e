"""The Label Studio ML backend over HTTP (Starlette, served by uvicorn): /health, /setup, /predict, /webhook.

Predictions run in a worker thread, so /health answers while a batch runs. A body that is not JSON, or not what
the protocol allows, gets 400 with a message; a labeling config the model does not fit gets 422; the server keeps
running either way.

Bounds, so that no client can exhaust the machine: with ``auth`` set, every route needs HTTP Basic Auth (401
otherwise; /health too: Label Studio sends the credentials there first, and a 401 on it is what makes Label Studio
say that the authentication settings are wrong); at most ``max_requests`` requests are handled at once (429 with
Retry-After beyond; /health is not counted); a body is read to at most ``max_body_bytes`` (413, from the declared
length before reading, else as it streams in); a /predict of more than ``max_tasks`` tasks gets 413. JSON is
parsed and written in a worker thread, so a large body does not hold up /health either.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from visionkit.errors import DataError, UsageError, VisionkitError
from visionkit.serve.prelabeler import BadRequest, PreLabeler

log = logging.getLogger("visionkit.serve")


class TooLarge(BadRequest):
    """A body or a task list over the limits: HTTP 413."""


@dataclass(frozen=True)
class Limits:
    """What one server accepts (the serve keys ``max_body_mb``, ``max_tasks``, ``max_requests``)."""

    max_body_bytes: int
    max_tasks: int
    max_requests: int

    @classmethod
    def defaults(cls, **changes: Any) -> Limits:
        """The serve keys' defaults (declared once, in visionkit/serve/commands.py), with ``changes``."""
        from visionkit.serve.commands import KEYS

        keys = {k: v for k, (v, _) in KEYS["labelstudio"].items()}
        base = {
            "max_body_bytes": int(keys["max_body_mb"] * 2**20),
            "max_tasks": keys["max_tasks"],
            "max_requests": keys["max_requests"],
        }
        return cls(**{**base, **changes})


class BasicAuth:
    """ASGI middleware: HTTP Basic Auth on every path; 401 with WWW-Authenticate otherwise. The user and password
    are compared in constant time (both, always), so timing tells nothing of either. UTF-8 is asked for (RFC 7617),
    and Latin-1 accepted too: Label Studio's client (requests) encodes credentials in Latin-1."""

    def __init__(self, app, user: str, password: str, realm: str = "visionkit"):
        self.app = app
        self.pairs = [(user.encode(), password.encode())]
        try:
            latin = (user.encode("latin-1"), password.encode("latin-1"))
            if latin != self.pairs[0]:
                self.pairs.append(latin)
        except UnicodeEncodeError:
            pass
        self.realm = realm

    def allowed(self, header: bytes | None) -> bool:
        if not header or not header[:6].lower() == b"basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        match = False
        for want_user, want_password in self.pairs:  # every pair compared, whatever the first gave
            match |= hmac.compare_digest(user, want_user) & hmac.compare_digest(password, want_password)
        return bool(sep) and match

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        if self.allowed(header):
            return await self.app(scope, receive, send)
        log.warning("%s: 401 (%s)", scope["path"], "wrong credentials" if header else "no credentials")
        body = json.dumps(
            {
                "error": "this ML backend needs HTTP Basic Auth: set the user and password in Label "
                "Studio's model settings (Authentication: Basic)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(labeler: PreLabeler, limits: Limits | None = None, auth: tuple[str, str] | None = None):
    """The ASGI app for one PreLabeler, within ``limits`` (default: the serve keys' defaults); with ``auth``
    (user, password), behind HTTP Basic Auth."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    limits = limits or Limits.defaults()
    state = {"in_flight": 0, "seconds": 1.0}  # requests being handled; a running mean of how long one takes

    def too_busy(request: Request) -> JSONResponse:
        wait = max(1, min(60, math.ceil(state["seconds"] * state["in_flight"] / limits.max_requests)))
        log.warning("%s: 429 (%d requests in flight)", request.url.path, state["in_flight"])
        return JSONResponse(
            {
                "error": f"the server is busy with {state['in_flight']} requests (max_requests="
                f"{limits.max_requests}); retry in {wait} s"
            },
            status_code=429,
            headers={"Retry-After": str(wait)},
        )

    async def body_of(request: Request) -> Any:
        """The JSON body, read to at most max_body_bytes (a declared length is checked first, a chunked body as
        it streams in); parsed in a worker thread."""
        most = limits.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > most:
            raise TooLarge(f"request body of {int(length)} bytes is larger than {most} (the server's max_body_mb=)")
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                raise TooLarge(f"request body is larger than {most} bytes (the server's max_body_mb=)")
            parts.append(chunk)

        def parse() -> Any:
            try:
                return json.loads(b"".join(parts) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise BadRequest(f"{request.url.path} needs a JSON body: {e}") from e

        return await run_in_threadpool(parse)

    def check_tasks(body: Any) -> None:
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if isinstance(tasks, list) and len(tasks) > limits.max_tasks:
            raise TooLarge(
                f"/predict got {len(tasks)} tasks, more than the server's max_tasks={limits.max_tasks}; retrieve "
                f"predictions for fewer tasks at a time, or start the server with a larger max_tasks="
            )

    async def call(request: Request, method, route_checks=None) -> JSONResponse:
        if state["in_flight"] >= limits.max_requests:
            return too_busy(request)
        state["in_flight"] += 1
        start = time.monotonic()
        try:
            body = await body_of(request)
            if route_checks:
                route_checks(body)
            return await run_in_threadpool(lambda: JSONResponse(method(body)))  # rendered off the event loop
        except BadRequest as e:
            status = 413 if isinstance(e, TooLarge) else 400
            log.warning("%s: %d %s", request.url.path, status, e)
            return JSONResponse({"error": str(e)}, status_code=status)
        except (UsageError, DataError) as e:  # the labeling config does not fit the model, or is not XML
            log.warning("%s: 422 %s", request.url.path, e)
            return JSONResponse({"error": str(e)}, status_code=422)
        except Exception as e:  # a bug or a broken model: answered, logged with its traceback; the server runs on
            log.exception("%s: 500", request.url.path)
            message = str(e) if isinstance(e, VisionkitError) else f"{type(e).__name__}: {e}"
            return JSONResponse({"error": message}, status_code=500)
        finally:
            state["in_flight"] -= 1
            state["seconds"] = 0.8 * state["seconds"] + 0.2 * (time.monotonic() - start)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(labeler.health())

    async def setup(request: Request) -> JSONResponse:
        return await call(request, labeler.setup)

    async def predict(request: Request) -> JSONResponse:
        return await call(request, labeler.predict, check_tasks)

    def accept_webhook(body: Any) -> dict[str, Any]:
        action = body.get("action") if isinstance(body, dict) else None
        log.info("webhook: %s", action or "(no action)")  # accepted; visionkit trains from the CLI, not here
        return {"status": "ok", "action": action}

    async def webhook(request: Request) -> JSONResponse:
        return await call(request, accept_webhook)

    async def versions(request: Request) -> JSONResponse:
        return JSONResponse({"versions": [labeler.model_version]})

    app = Starlette(
        routes=[
            Route("/", health),
            Route("/health", health),
            Route("/setup", setup, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/webhook", webhook, methods=["POST"]),
            Route("/versions", versions),
        ]
    )
    return BasicAuth(app, *auth) if auth else app

"""The Label Studio ML backend over HTTP (Starlette, served by uvicorn): /health, /setup, /predict, /webhook.

Predictions run in a worker thread, so /health answers while a batch runs. A body that is not JSON, or not what
the protocol allows, gets 400 with a message; a labeling config the model does not fit gets 422; the server keeps
running either way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from visionkit.errors import DataError, UsageError, VisionkitError
from visionkit.serve.prelabeler import BadRequest, PreLabeler

log = logging.getLogger("visionkit.serve")
MAX_BODY_BYTES = 512 * 1024 * 1024  # a /predict body of many thousand tasks is a few MB; refuse absurd ones


class TooLarge(BadRequest):
    """A body over MAX_BODY_BYTES: HTTP 413."""


def create_app(labeler: PreLabeler):
    """The ASGI app for one PreLabeler."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def body_of(request: Request) -> Any:
        """The JSON body, read to at most MAX_BODY_BYTES (a declared length is checked first, a chunked body as
        it streams in)."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise TooLarge(f"request body of {length} bytes is larger than {MAX_BODY_BYTES}")
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise TooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
            parts.append(chunk)
        try:
            return json.loads(b"".join(parts) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"{request.url.path} needs a JSON body: {e}") from e

    async def call(request: Request, method) -> JSONResponse:
        try:
            body = await body_of(request)
            answer = await run_in_threadpool(method, body)
            return JSONResponse(answer)
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

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(labeler.health())

    async def setup(request: Request) -> JSONResponse:
        return await call(request, labeler.setup)

    async def predict(request: Request) -> JSONResponse:
        return await call(request, labeler.predict)

    async def webhook(request: Request) -> JSONResponse:
        try:
            body = await body_of(request)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        action = body.get("action") if isinstance(body, dict) else None
        log.info("webhook: %s", action or "(no action)")  # accepted; visionkit trains from the CLI, not here
        return JSONResponse({"status": "ok", "action": action})

    async def versions(request: Request) -> JSONResponse:
        return JSONResponse({"versions": [labeler.model_version]})

    return Starlette(
        routes=[
            Route("/", health),
            Route("/health", health),
            Route("/setup", setup, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/webhook", webhook, methods=["POST"]),
            Route("/versions", versions),
        ]
    )

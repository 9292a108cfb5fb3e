"""The Label Studio ML backend over HTTP (Starlette, served by uvicorn): /health, /setup, /predict, /webhook.

Predictions run in a worker thread, so /health answers while a batch runs. A body that is not JSON, or not what
the protocol allows, gets 400 with a message; a labeling config the model does not fit gets 422; the server keeps
running either way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from visionkit.errors import UsageError, VisionkitError
from visionkit.serve.prelabeler import BadRequest, PreLabeler

log = logging.getLogger("visionkit.serve")
MAX_BODY_BYTES = 512 * 1024 * 1024  # a /predict body of many thousand tasks is a few MB; refuse absurd ones


def create_app(labeler: PreLabeler):
    """The ASGI app for one PreLabeler."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def body_of(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"request body of {length} bytes is larger than {MAX_BODY_BYTES}")
        raw = await request.body()
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"{request.url.path} needs a JSON body: {e}") from e

    async def call(request: Request, method) -> JSONResponse:
        try:
            body = await body_of(request)
            return JSONResponse(await run_in_threadpool(method, body))
        except BadRequest as e:
            log.warning("%s: 400 %s", request.url.path, e)
            return JSONResponse({"error": str(e)}, status_code=400)
        except UsageError as e:  # the labeling config does not fit the model
            log.warning("%s: 422 %s", request.url.path, e)
            return JSONResponse({"error": str(e)}, status_code=422)
        except VisionkitError as e:
            log.error("%s: 500 %s", request.url.path, e)
            return JSONResponse({"error": str(e)}, status_code=500)

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

    return Starlette(routes=[
        Route("/", health), Route("/health", health), Route("/setup", setup, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]), Route("/webhook", webhook, methods=["POST"]),
        Route("/versions", versions),
    ])

"""Where Label Studio tasks come from: an export file (JSON or JSON_MIN) or a live server (label-studio-sdk)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from visionkit.errors import DataError, UsageError

MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"}


def load_export(path: str | Path) -> tuple[list[dict], str]:
    """Tasks in the full JSON layout, and which export format the file was ('JSON' or 'JSON_MIN')."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"export file '{path}' does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not JSON ({e}); export the project as JSON from Label Studio") from e
    except UnicodeDecodeError as e:
        raise DataError(
            f"'{path}' is not UTF-8 text (byte {e.start}); export the project as JSON from Label Studio"
        ) from None
    except RecursionError:
        raise DataError(f"'{path}' nests lists or objects too deeply to be a Label Studio export") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"'{path}' is not a Label Studio export: expected a list of tasks")
    tasks = [t for t in data if isinstance(t, dict)]  # the others are reported by the importer (check_tasks)
    if data and not tasks:
        raise DataError(f"'{path}' is not a Label Studio export: none of its {len(data)} items is a task (an object)")
    if all("data" in t for t in tasks):
        return data, "JSON"
    warnings.warn(
        f"'{path}' is a JSON_MIN export: it keeps one annotation per task and lacks cancelled/ground-truth "
        f"flags, predictions, region ids and result types (inferred from the value keys); export as JSON "
        f"to import everything",
        stacklevel=2,
    )
    return [_from_min(t, path) if isinstance(t, dict) else t for t in data], "JSON_MIN"


def _from_min(t: dict, path: Path) -> dict:
    """One JSON_MIN row → a task in the full layout (types inferred from the label keys)."""
    data, results = {}, []
    for key, value in t.items():
        if key in MIN_META:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for v in value:
                results.append(_min_region(key, v, path))
        elif isinstance(value, str) or not isinstance(value, list):
            data[key] = value
        else:  # a list of plain values: a Choices tag in JSON_MIN is {"choices": [...]} or a bare list
            results.append({"from_name": key, "to_name": "", "type": "choices", "value": {"choices": value}})
    ann = {
        "id": t.get("annotation_id"),
        "completed_by": t.get("annotator"),
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": t.get("created_at"),
        "updated_at": t.get("updated_at"),
        "result": results,
    }
    return {"id": t.get("id"), "data": data, "annotations": [ann] if results else [], "predictions": []}


def _min_region(key: str, v: dict, path: Path) -> dict:
    kind = next(
        (
            k
            for k in ("rectanglelabels", "polygonlabels", "brushlabels", "keypointlabels", "choices", "labels")
            if k in v
        ),
        None,
    )
    if kind is None:
        if "rle" in v:
            kind = "brushlabels"
        elif "points" in v:
            kind = "polygonlabels"
        elif "width" in v and "height" in v:
            kind = "rectanglelabels"
        else:
            kind = "unknown"
    value = {k: x for k, x in v.items() if k not in ("original_width", "original_height")}
    if kind == "brushlabels" and "brushlabels" not in value:
        value["brushlabels"] = []
    return {
        "from_name": key,
        "to_name": "",
        "type": kind,
        "value": value,
        "original_width": v.get("original_width"),
        "original_height": v.get("original_height"),
    }


# A live import's patience with a struggling server. Every request (the project, the export) gets ``retries``
# further attempts after a failure that may pass (HTTP 5xx, 408 or 429, no answer within ``timeout`` seconds, a
# connection refused or closed in the middle of an answer, an export cut short), waiting RETRY_WAIT_S, then twice
# that, and so on up to RETRY_WAIT_MAX_S between attempts. ``timeout=`` and ``retries=`` are keys of
# `visionkit data import labelstudio`; these are their defaults. Other failures (401, 404, ...) are not retried.
TIMEOUT_S = 60.0
RETRIES = 4
RETRY_WAIT_S = 1.0
RETRY_WAIT_MAX_S = 30.0


def fetch_project(
    url: str,
    project: int,
    token: str | None,
    timeout: float = TIMEOUT_S,
    retries: int = RETRIES,
    verbose: bool = True,
) -> tuple[list[dict], str, dict[str, str]]:
    """Tasks (full JSON export), the labeling config and the auth headers for image downloads, from a server.
    Transient failures are retried with exponential backoff (see RETRIES); then one DataError, nothing written."""
    try:
        from label_studio_sdk import LabelStudio
    except ImportError as e:
        raise UsageError(
            "importing from a Label Studio server needs label-studio-sdk: pip install 'visionkit[labelstudio]'"
        ) from e
    token = token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not token:
        raise UsageError(
            "a Label Studio server needs an access token: pass token=... or set LABEL_STUDIO_API_KEY "
            "(legacy token or personal access token)"
        )
    where = f"Label Studio at {url}, project {project}"
    try:
        client = LabelStudio(base_url=url, api_key=token, timeout=float(timeout))
    except Exception as e:
        raise DataError(f"{where}: {type(e).__name__}: {e}") from e
    wrapper = getattr(client, "_client_wrapper", None)
    http = getattr(wrapper, "httpx_client", None)
    if hasattr(http, "base_max_retries"):  # one retry policy, ours: the SDK's own would multiply the attempts
        http.base_max_retries = 0
    config = _with_retries(lambda: client.projects.get(id=project).label_config, where, timeout, retries, verbose)
    tasks = _with_retries(lambda: _export_json(client, project), where, timeout, retries, verbose)
    # the SDK resolves personal access tokens to a short-lived bearer token; legacy tokens are sent as-is
    headers = _auth_headers(client, token)
    return tasks, config, headers


def _transient(e: Exception, timeout: float) -> str | None:
    """Why a failed request may succeed if tried again, or None when it will not."""
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return f"no answer within timeout={timeout:g} s"
    if isinstance(e, httpx.TransportError):  # refused, reset, or closed before the whole answer came
        return f"the connection failed ({type(e).__name__}: {str(e)[:120] or 'closed'})"
    status = getattr(e, "status_code", None)
    if isinstance(status, int) and (status >= 500 or status in (408, 429)):
        return f"HTTP {status}"
    if isinstance(e, json.JSONDecodeError):
        return "the export was cut short (incomplete JSON)"
    return None


def _with_retries(fetch, where: str, timeout: float, retries: int, verbose: bool):
    """``fetch()``, retried with exponential backoff on transient failures; one DataError at the end."""
    import time

    start = time.monotonic()
    for attempt in range(retries + 1):
        try:
            return fetch()
        except Exception as e:
            reason = _transient(e, timeout)
            if reason is None:
                raise DataError(f"{where}: {type(e).__name__}: {str(e)[:300]}") from e
            if attempt == retries:
                raise DataError(
                    f"{where}: {reason}, on all {retries + 1} attempts over {time.monotonic() - start:.0f} s; "
                    f"nothing was written. Check the server (its log says why), or give it more with timeout= "
                    f"and retries="
                ) from e
            wait = min(RETRY_WAIT_S * 2**attempt, RETRY_WAIT_MAX_S)
            if verbose:
                print(f"{where}: {reason}; retrying in {wait:g} s ({attempt + 1}/{retries})", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _export_json(client, project: int) -> list[dict]:
    exported = client.projects.exports.as_json(project)
    if isinstance(exported, (bytes, bytearray)):
        exported = json.loads(exported)
    if isinstance(exported, str):
        exported = json.loads(exported)
    if hasattr(exported, "__iter__") and not isinstance(exported, (list, dict)):
        chunks = b"".join(c if isinstance(c, bytes) else str(c).encode() for c in exported)
        exported = json.loads(chunks)
    return list(exported)


def _auth_headers(client, token: str) -> dict[str, str]:
    wrapper = getattr(client, "_client_wrapper", None)
    if wrapper is not None and hasattr(wrapper, "get_headers"):
        try:
            headers = {k: v for k, v in wrapper.get_headers().items() if k.lower() == "authorization"}
            if headers:
                return headers
        except Exception:  # fall back to the legacy header below
            pass
    return {"Authorization": f"Token {token}"}

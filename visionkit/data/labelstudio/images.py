"""Find the file behind a task's image reference, safely.

References: uploads ``/data/upload/<project>/<8 hex>-<name>``, local storage ``/data/local-files/?d=<path>``,
http(s) URLs (fetched only when the user allows it), cloud URLs (s3://, gs://, ...: looked up by base name).
A path taken from task data can never leave the folder it is resolved in.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from visionkit.errors import DataError
from visionkit.limits import MAX_IMAGE_BYTES

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass
class ImageRef:
    url: str
    kind: str  # upload, local, http, cloud, path
    relpath: str  # the path part that names the file (for lookups under images=)
    name: str  # output file name (upload hash removed)


class UnsafePathError(DataError):
    """A path in task data that would escape its folder."""


def parse_image_ref(url: str, task_id) -> ImageRef:
    if not isinstance(url, str) or not url:
        raise DataError(f"task {task_id}: data has no image URL")
    parsed = urllib.parse.urlparse(url)
    if parsed.path.startswith("/data/local-files/") or "local-files" in parsed.path and parsed.query:
        d = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
        rel, kind = d, "local"
    elif "/data/upload/" in parsed.path:
        rel, kind = parsed.path.split("/data/", 1)[1], "upload"
    elif parsed.scheme in ("http", "https"):
        rel, kind = urllib.parse.unquote(parsed.path.lstrip("/")), "http"
    elif parsed.scheme and len(parsed.scheme) > 1:
        rel, kind = (parsed.netloc + parsed.path), "cloud"
    else:
        rel, kind = url, "path"
    rel = urllib.parse.unquote(rel)
    check_relative(rel, task_id)
    base = PurePosixPath(rel).name
    name = UPLOAD_PREFIX.sub("", base) if kind == "upload" else base
    if not name:
        raise DataError(f"task {task_id}: image reference '{url}' names no file")
    return ImageRef(url, kind, rel, name)


def check_relative(rel: str, task_id) -> None:
    """Refuse absolute paths and '..' parts: task data must not point outside the folders it is looked up in."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise UnsafePathError(
            f"task {task_id}: refused image path '{rel}': it would leave the images folder "
            f"(absolute paths and '..' are not allowed in task data)"
        )


def inside(root: Path, rel: str) -> Path:
    root = root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise UnsafePathError(f"refused image path '{rel}': it resolves outside '{root}'")
    return path


def find_local(ref: ImageRef, images_dir: Path | None) -> tuple[Path | None, list[str]]:
    """The file under ``images_dir`` for ``ref``: by relative path, by stored name, by original name."""
    if images_dir is None:
        return None, []
    tried: list[str] = []
    base = PurePosixPath(ref.relpath).name
    rels = [ref.relpath]
    if ref.kind == "upload":
        rels.append(ref.relpath.split("/", 1)[1] if "/" in ref.relpath else ref.relpath)  # drop "upload/"
    rels += [base, ref.name]
    for rel in dict.fromkeys(rels):
        p = inside(images_dir, rel)
        tried.append(str(p))
        if p.is_file():
            return p, tried
    return None, tried


def same_origin(url: str, base: str | None) -> bool:
    """True when ``url`` has ``base``'s scheme, host and port: the only place a Label Studio token may go."""
    if not base:
        return False
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    port = {"http": 80, "https": 443}
    return (a.scheme, a.hostname, a.port or port.get(a.scheme)) == (b.scheme, b.hostname, b.port or port.get(b.scheme))


def server_url(ref: ImageRef, base_url: str) -> str:
    """The address of an upload / local-files image on the Label Studio server at ``base_url`` (a reference that is
    already a full URL stays as it is; ``fetch`` sends the token only when it points at ``base_url``)."""
    if urllib.parse.urlsplit(ref.url).scheme:
        return ref.url
    return base_url.rstrip("/") + "/" + ref.url.lstrip("/")


class _KeepTokenAtHome(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but drop the Authorization header on one that leaves the trusted server (urllib would
    copy it to any host; presigned storage URLs also refuse a second credential)."""

    def __init__(self, trusted: str | None):
        self.trusted = trusted

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not same_origin(newurl, self.trusted):
            for store in (new.headers, new.unredirected_hdrs):
                store.pop("Authorization", None)
        return new


def fetch(
    url: str,
    headers: dict[str, str],
    timeout: float = 60.0,
    trusted: str | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> bytes:
    """Download one image (only reached when the user allowed downloads or named the server). ``headers`` (the
    token) are sent only to ``trusted``'s origin, never to another host or through a redirect to one; the body
    is read to at most ``max_bytes`` and within ``timeout`` seconds in all."""
    send = headers if same_origin(url, trusted) else {}
    req = urllib.request.Request(url, headers=send)
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.build_opener(_KeepTokenAtHome(trusted)).open(req, timeout=timeout) as r:
            return read_bounded(r, url, max_bytes, deadline, timeout)
    except DataError:
        raise
    except Exception as e:  # network errors of every kind become one clear error
        raise DataError(f"could not download '{url}': {e}") from e


def read_bounded(response, url: str, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """A response's body, refused once it passes ``max_bytes`` or the ``deadline`` (time.monotonic())."""
    parts, size = [], 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
        if size > max_bytes:
            raise DataError(f"'{url}' is larger than {max_bytes} bytes; refused")
        if time.monotonic() > deadline:
            raise DataError(f"'{url}' took longer than {timeout:g} s to download; refused")
        parts.append(chunk)
    return b"".join(parts)

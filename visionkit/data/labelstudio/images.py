"""Find the file behind a task's image reference, safely.

References: uploads ``/data/upload/<project>/<8 hex>-<name>``, local storage ``/data/local-files/?d=<path>``,
http(s) URLs (fetched only when the user allows it), cloud URLs (s3://, gs://, ...: looked up by base name).
A path taken from task data can never leave the folder it is resolved in.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from visionkit.errors import DataError

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
        raise UnsafePathError(f"task {task_id}: refused image path '{rel}': it would leave the images folder "
                              f"(absolute paths and '..' are not allowed in task data)")


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


def fetch(url: str, headers: dict[str, str], timeout: float = 60.0) -> bytes:
    """Download one image (only reached when the user allowed downloads or named the server)."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except Exception as e:  # network errors of every kind become one clear error
        raise DataError(f"could not download '{url}': {e}") from e

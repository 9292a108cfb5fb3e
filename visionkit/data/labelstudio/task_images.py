"""The image behind a Label Studio task, decoded for a model: from a local ``images=`` folder, from the Label
Studio server (uploads and local-files, with its token), or from an http(s) URL. The same path rules as the
importer: a path from task data never leaves the folder it is looked up in."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from visionkit.data.format import image_size
from visionkit.data.labelstudio import images as refs
from visionkit.errors import DataError
from visionkit.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS


class TaskImages:
    """``load(task, key)`` → BGR uint8 (H, W, 3) as displayed (EXIF orientation applied, as Label Studio shows it
    and its percentages refer to)."""

    def __init__(
        self,
        base_url: str | None = None,
        headers: dict[str, str] | None = None,
        images_dir: str | Path | None = None,
        timeout: float = 30.0,
        fetch: Callable[..., bytes] = refs.fetch,
    ):
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.headers = dict(headers or {})
        self.images_dir = Path(images_dir) if images_dir else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise DataError(f"images folder '{self.images_dir}' does not exist")
        self.timeout = timeout
        self.fetch = fetch  # the server passes one that refuses private addresses (visionkit.serve.fetch)

    def load(self, task: dict, key: str) -> np.ndarray:
        tid = task.get("id")
        data = task.get("data")
        if not isinstance(data, dict) or key not in data:
            raise DataError(f"task {tid}: data has no '{key}' (the key the labeling config's <Image> reads)")
        ref = refs.parse_image_ref(data[key], tid)
        path, tried = refs.find_local(ref, self.images_dir)
        if path is not None:
            return decode(path.read_bytes(), str(path))
        if ref.kind in ("upload", "local"):
            if self.base_url is None:
                where = f" (looked for {', '.join(tried)})" if tried else ""
                raise DataError(
                    f"task {tid}: image '{ref.url}' is stored in Label Studio, but no server URL is known"
                    f"{where}; Label Studio sends it in /setup, or set LABEL_STUDIO_URL or images="
                )
            url = refs.server_url(ref, self.base_url)
            return decode(self.fetch(url, self.headers, self.timeout, trusted=self.base_url), ref.url)
        if ref.kind == "http":  # the token goes to the Label Studio server only, never to another host
            return decode(self.fetch(ref.url, self.headers, self.timeout, trusted=self.base_url), ref.url)
        raise DataError(
            f"task {tid}: image '{ref.url}' ({ref.kind}) cannot be fetched by visionkit; give images= a "
            f"folder holding the files (looked for {', '.join(tried) or 'nothing: no images='})"
        )


def decode(data: bytes, name: str) -> np.ndarray:
    """Encoded bytes → BGR; the declared size is checked before decoding (a small file can declare a huge image)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(f"image '{name}' is {len(data)} bytes, more than the {MAX_IMAGE_BYTES} allowed")
    try:
        w, h = image_size(io.BytesIO(data))
    except Exception as e:  # PIL names what is wrong with the file
        raise DataError(f"image '{name}' could not be read ({len(data)} bytes): {type(e).__name__}: {e}") from e
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"image '{name}' is {w}x{h}, more than the {MAX_IMAGE_PIXELS} pixels allowed")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if img is None:
        raise DataError(f"image '{name}' could not be decoded ({len(data)} bytes; not an image OpenCV reads)")
    return img

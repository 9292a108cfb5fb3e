"""``weights=https://...``: the one download visionkit makes, and only when the user names a URL.

The file goes into ``weights/`` (under the working folder) with a progress bar. A cut download resumes: the bytes
so far sit in ``NAME.part`` and the next try asks for the rest with an HTTP Range request (a server that ignores
it sends the whole file again, and the part is restarted). The finished file is checked against ``sha256=`` when
given (a mismatch deletes it) and only then renamed into place, so ``weights/NAME`` is always a whole file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from visionkit.errors import CheckpointError, UsageError

WEIGHTS_DIR = Path("weights")
CHUNK = 1 << 16


def is_url(spec: str) -> bool:
    return str(spec).startswith(("https://", "http://"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha(path: Path, sha256: str | None, delete: bool) -> None:
    if sha256 is None:
        return
    got = sha256_of(path)
    if got != sha256.lower():
        if delete:
            path.unlink(missing_ok=True)
        raise CheckpointError(
            f"weights '{path}' has SHA-256 {got}, not the sha256={sha256} given"
            + ("; the download was deleted. Check the URL and the checksum" if delete else "")
        )


def resolve_weights(
    spec: str | Path, sha256: str | None = None, verbose: bool = True, folder: Path | None = None
) -> Path:
    """The local file ``weights=`` names: the path itself, or the URL's file downloaded into ``folder``
    (``weights/``); checked against ``sha256`` when given."""
    spec = str(spec)
    if not is_url(spec):
        path = Path(spec)
        if path.is_file():
            _check_sha(path, sha256, delete=False)
        return path
    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    name = Path(urllib.parse.urlparse(spec).path).name
    if not name:
        raise UsageError(f"weights={spec}: the URL names no file (it must end in a file name such as model.pth)")
    dest = folder / name
    if dest.is_file():
        _check_sha(dest, sha256, delete=False)
        if verbose:
            print(f"weights: {dest} (already downloaded from {spec})")
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    download(spec, part, verbose)
    _check_sha(part, sha256, delete=True)
    os.replace(part, dest)
    return dest


def download(url: str, part: Path, verbose: bool = True, timeout: float = 60.0) -> None:
    """Fetch ``url`` into ``part``, continuing from its current length when the server supports ranges."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "visionkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked beyond the end: the part is already whole
            return
        raise CheckpointError(f"weights={url}: the server answered {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise CheckpointError(f"weights={url}: cannot download ({getattr(e, 'reason', e)}); check the URL") from e
    with response:
        resumed = have and response.status == 206
        if have and not resumed:  # the server sent the whole file: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=f"download {part.name[:-5]}", disable=not verbose
        )
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:  # the connection dropped mid-file
                        raise CheckpointError(
                            f"weights={url}: the download was cut after {f.tell()} bytes ({e}); run again to resume"
                        ) from e
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
                done = f.tell()
        finally:
            bar.close()
    if total is not None and done < total:
        raise CheckpointError(f"weights={url}: the download was cut at {done} of {total} bytes; run again to resume")

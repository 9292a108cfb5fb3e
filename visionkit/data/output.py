"""Writing a dataset folder without ever harming the user's files.

- Every name that becomes a path component (an image name, a class folder, a split) passes ``safe_component``.
- ``check_sources`` refuses an output folder that is, contains or lies inside a source (images=, an export file).
- ``atomic_dir`` writes into a temporary folder beside ``out`` and swaps it in at the end, so a failed import
  leaves nothing behind. It records every file it wrote in a manifest (``MANIFEST``); an existing ``out`` is
  replaced only when it holds nothing but what the manifest lists (plus label caches that training adds), so
  ``exist_ok=True`` can never delete a file visionkit did not write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visionkit.errors import DataError, UsageError

MANIFEST = ".visionkit-manifest.json"
DERIVED = re.compile(r".*\.cache\.json(\.tmp)?$")  # files training adds inside a dataset (label caches)
MAX_NAME_BYTES = 255  # the longest file name Linux, macOS and Windows file systems accept
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeNameError(DataError):
    """A name from a file or a label that would be unsafe as a file or folder name."""


def safe_component(name, what: str) -> str:
    """``name`` if it is safe as one file or folder name, else an error naming ``what`` it is and why.

    Refused: empty names, '.' and '..', path separators ('/' and '\\'), absolute or drive paths, NUL and other
    control characters, and names longer than 255 bytes."""
    text = name if isinstance(name, str) else None
    why = None
    if text is None:
        why = f"it is a {type(name).__name__}, not text"
    elif not text.strip():
        why = "it is empty"
    elif text in (".", ".."):
        why = "it names a folder, not a file ('.' and '..' are not allowed)"
    elif "/" in text or "\\" in text:
        why = "it contains a path separator ('/' or '\\')"
    elif WINDOWS_DRIVE.match(text):
        why = "it starts like an absolute Windows path"
    elif any(ord(c) < 32 or c == "\x7f" for c in text):
        why = "it contains a control character"
    elif len(text.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        why = f"it is longer than {MAX_NAME_BYTES} bytes"
    if why:
        raise UnsafeNameError(
            f"refused {what} {name!r} as a file or folder name: {why}. Rename it in the source "
            f"(names may not be empty, '.', '..', absolute, or contain '/', '\\' or control "
            f"characters)"
        )
    return text


def check_sources(out: str | Path, sources: dict[str, str | Path | None]) -> None:
    """Refuse an ``out`` that is a source, contains one or lies inside one (after resolving symlinks): replacing
    or filling it could delete or mix in the user's own files. ``sources`` maps a key name (images, src) to a
    path; None entries are ignored."""
    target = Path(out).resolve()
    for key, src in sources.items():
        if src is None:
            continue
        source = Path(src).resolve()
        if target == source or target in source.parents or source in target.parents:
            relation = "is" if target == source else "contains" if target in source.parents else "lies inside"
            raise UsageError(
                f"out='{out}' {relation} {key}='{src}': an import never writes where it reads, since "
                f"replacing out would delete the source files. Choose an out= folder outside "
                f"{key}= (e.g. datasets/NAME)"
            )


def foreign_files(out: Path) -> list[Path]:
    """Files under ``out`` that no visionkit import wrote (not in its manifest, not a label cache); every file when
    there is no manifest."""
    manifest = out / MANIFEST
    listed: set[str] = set()
    if manifest.is_file():
        try:
            listed = set(json.loads(manifest.read_text()).get("files", []))
        except (ValueError, AttributeError, TypeError, UnicodeDecodeError):
            listed = set()  # an unreadable manifest protects nothing: every file counts as foreign
    found = []
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = Path(root, name).relative_to(out).as_posix()
            if rel == MANIFEST and listed:
                continue
            if rel not in listed and not DERIVED.match(name):
                found.append(Path(root, name))
    return sorted(found)


def check_replaceable(out: str | Path, exist_ok: bool) -> None:
    """Raise unless ``out`` is absent, or ``exist_ok`` and ``out`` holds only what a previous import wrote."""
    out = Path(out)
    if not (out.exists() or out.is_symlink()):
        return
    if not exist_ok:
        raise UsageError(f"'{out}' already exists; pass exist_ok=True to replace it, or choose another out=")
    if not out.is_dir() or out.is_symlink():
        raise UsageError(f"out='{out}' exists and is not a folder a visionkit import wrote; choose another out=")
    foreign = foreign_files(out)
    if foreign:
        listed = ", ".join(str(p.relative_to(out)) for p in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        origin = (
            "it has no visionkit manifest, so it was not written by a visionkit import"
            if not (out / MANIFEST).is_file()
            else f"they are not in its {MANIFEST}"
        )
        raise UsageError(
            f"refused to replace '{out}': it holds {len(foreign)} file(s) visionkit did not write "
            f"({listed}{more}); {origin}. Nothing was changed. Choose another out=, or move those "
            f"files away first"
        )


def prepare_output(out: str | Path, exist_ok: bool, sources: dict[str, str | Path | None]) -> Path:
    """Every check an import makes before it reads or writes anything."""
    check_sources(out, sources)
    check_replaceable(out, exist_ok)
    return Path(out)


@contextmanager
def atomic_dir(out: str | Path, exist_ok: bool = False, written_by: str = "visionkit") -> Iterator[Path]:
    """A temporary folder beside ``out``; when the block succeeds it gets a manifest of its files and takes the
    place of ``out`` (an existing ``out`` must pass ``check_replaceable``); when the block fails it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps({"written_by": written_by, "files": files}, indent=0) + "\n")
        check_replaceable(out, exist_ok)  # again: the folder may have changed while the import ran
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
            os.replace(out, old / "d")  # move aside first: a rename onto a non-empty folder fails
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file beside it, renamed over it at the end."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

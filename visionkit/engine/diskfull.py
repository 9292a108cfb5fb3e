"""A disk that fills up in the middle of a run ends it with one error that names the file and says so, whatever
was being written (results.csv, a plot, a checkpoint, an export), instead of a traceback from deep inside. Every
writer in a run writes atomically (a temporary file, then a rename), so the files already there stay whole: last.pt
is the last complete epoch and ``resume=`` continues from it once space is freed."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visionkit.errors import VisionkitError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(VisionkitError):
    """No space left on the device (or the quota) while a run was writing."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def no_space(exc: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``exc`` (itself, its cause or context), or None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return e
    return None


def _shown(name: str | None) -> str | None:
    """The file a user knows: ``.last.pt.x1y2.tmp`` (an atomic write's temporary) → ``last.pt``."""
    if not name:
        return None
    p = Path(str(name))
    m = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", p.name)
    if m:
        return str(p.with_name(m.group(1)))
    if p.suffix == ".tmp":
        return str(p.with_suffix(""))
    return str(p)


def disk_full_error(
    exc: BaseException, where: Path | str | None, what: str, hint: str, file: Path | str | None = None
) -> DiskFullError:
    """One message: the file (``file`` when the OS did not say which; else the folder), 'no space left', and what to
    do."""
    e = no_space(exc)
    name = _shown(getattr(e, "filename", None)) or _shown(getattr(exc, "path", None)) or _shown(file)
    target = f"'{name}'" if name else f"a file in '{where}'"
    reason = "disk quota exceeded" if e is not None and e.errno == errno.EDQUOT else "no space left on the device"
    return DiskFullError(f"{what}: {reason} while writing {target}. {hint}")


@contextmanager
def disk_full_guard(
    where, what: str, hint="Free some space and run it again", file: Path | str | None = None
) -> Iterator[None]:
    """Turn any out-of-space failure inside the block into one :class:`DiskFullError`. ``where``: the folder being
    written, or a callable giving it (a run's folder is known only once it is made); ``hint``: text or a callable;
    ``file``: the file the block writes, named when the OS error does not say."""
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as exc:
        if no_space(exc) is None:
            raise
        folder = where() if callable(where) else where
        hint_text = hint() if callable(hint) else hint
        raise disk_full_error(exc, folder, what, hint_text, file) from exc

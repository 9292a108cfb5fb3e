"""Run folders that two processes can never share: a race-free ``train``, ``train2``, ... increment, and a lock
that a running run holds on its folder so that ``exist_ok=True`` (or a resume) cannot write into it meanwhile.

The increment creates each candidate with one ``mkdir`` (atomic: of two processes asking for the same name, one
gets ``FileExistsError`` and moves on to the next), never "check it exists, then create it". The lock is an
advisory ``flock`` on ``RUN_LOCK`` inside the folder, with the holder's pid written in it for the message: the
kernel drops it when the holder exits, however it exits, so a lock left by a killed run is simply taken over.
"""

from __future__ import annotations

import os
from pathlib import Path

from visionkit.engine.diskfull import NO_SPACE, DiskFullError
from visionkit.errors import UsageError, VisionkitError

try:  # POSIX; elsewhere the lock is a pid file created with O_EXCL (a dead pid's file is taken over)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

RUN_LOCK = ".visionkit-run.lock"
_held: dict[Path, int] = {}  # run folder → the open lock file's descriptor, for the folders this process holds


def _write_error(path: Path, e: OSError) -> VisionkitError:
    if e.errno in NO_SPACE:
        return DiskFullError(f"cannot create the run folder '{str(path)[:200]}': no space left on the device")
    return UsageError(
        f"cannot create the run folder '{str(path)[:200]}': {e.strerror or e}; pick a writable project= and a "
        f"shorter name="
    )


def create_run_dir(base: Path, exist_ok: bool = False, hold: bool = False) -> Path:
    """Create ``base`` (or, when it exists and ``exist_ok`` is false, the first free ``base2``, ``base3``, ...),
    atomically. Refused when the folder is locked by a run still going in another process. ``hold``: keep the
    lock until :func:`release_run_dir` (or the process's end); otherwise it is only checked."""
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only, full, or a name longer than the file system allows
        raise _write_error(base, e) from e
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}{n}")
        try:
            path.mkdir(exist_ok=exist_ok)
        except FileExistsError:
            if not path.is_dir():  # a file of that name: never the folder of a run
                if exist_ok:
                    raise UsageError(f"'{path}' exists and is not a folder; pick another name=") from None
            n += 1
            continue
        except OSError as e:
            raise _write_error(path, e) from e
        break
    lock_run_dir(path)
    if not hold:
        release_run_dir(path)
    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "another process"


def lock_run_dir(path: Path) -> None:
    """Hold the run lock of ``path`` (already a folder) for this process; re-entrant within one process."""
    path = Path(path)
    key = path.resolve()
    if key in _held:
        return
    lock = path / RUN_LOCK
    if fcntl is None:  # pragma: no cover - Windows
        _held[key] = _lock_pid_file(lock, path)
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _write_error(path, e) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(path) from None
        # the holder before us may have removed the file after we opened it: then we hold a lock on a file no one
        # else can see; open the one that is there now and try again
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:  # the pid only names the holder in a refusal; the flock is the lock (a full disk may refuse the write)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    _held[key] = fd


def _busy(path: Path) -> UsageError:
    return UsageError(
        f"'{path}' belongs to a run that is still going ({_holder(path / RUN_LOCK)} holds {RUN_LOCK}); wait for "
        f"it to finish, or pick another name= (exist_ok=True cannot share a running run's folder)"
    )


def _lock_pid_file(lock: Path, path: Path) -> int:  # pragma: no cover - Windows
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if _pid_alive(pid):
                raise _busy(path) from None
            lock.unlink(missing_ok=True)  # stale: its run is gone
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd
    raise _busy(path)


def release_run_dir(path: Path) -> None:
    """Give up the run lock of ``path`` (nothing if this process does not hold it); the lock file goes too."""
    fd = _held.pop(Path(path).resolve(), None)
    if fd is None:
        return
    try:
        (Path(path) / RUN_LOCK).unlink(missing_ok=True)  # while still locked, so no one holds the unlinked file
    except OSError:  # a full or read-only disk: the file stays, unlocked, and the next run takes it over
        pass
    os.close(fd)

"""``python -m visionkit ARGS`` for the tests without paying the interpreter's start each time.

Every CLI test used to start a new interpreter that imported torch, torchvision and visionkit: about 5 s of CPU per
call, and the suite makes hundreds. Here one server process per test worker imports them once and forks a child per
command; the child is a fresh process in every respect that matters (its own pid, cwd, environment, file
descriptors, exit code) except that the imports are done. It runs ``visionkit.cli.entrypoint`` with stdout and
stderr sent to files and writes its exit code to a third. Calls that change what happens at interpreter start (an
``env=`` with PYTHONPATH for a plugin, thread counts) still start a real interpreter.

The server forks before any torch operation has run, so no OpenMP or intra-op thread pool exists to be copied.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVER = r"""
import json, os, signal, sys, traceback
import torch, torchvision  # noqa: F401  the slow imports, done once
import visionkit, visionkit.api, visionkit.cli  # noqa: F401
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; callers poll their pid
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        continue
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command's own subprocesses must be waitable
    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = ["visionkit", *req["argv"]]
        try:
            visionkit.cli.entrypoint()
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        import atexit, threading
        threading._shutdown()  # what interpreter exit does: wait for non-daemon threads, then atexit handlers
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            with open(req["code"], "w") as f:
                f.write(str(code))
        finally:
            os._exit(code)
"""

# variables read when an interpreter starts: a call that sets them needs a real one
START_VARIABLES = (
    "PYTHONPATH",
    "PYTHONHOME",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONWARNINGS",
    "PYTHONOPTIMIZE",
)


class _Server:
    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.start_env: dict[str, str] = {}

    def pid_for(self, request: dict) -> int:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start_env = dict(os.environ)
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # the server's loop ends
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self.proc.stdout.close()


_server = _Server()


def needs_interpreter(env: dict[str, str]) -> bool:
    start = _server.start_env or os.environ
    return any(env.get(k) != start.get(k) for k in START_VARIABLES)


def run(argv: list[str], cwd: Path | None, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m visionkit *argv`` in a forked child of the server; the same result as ``subprocess.run``."""
    with tempfile.TemporaryDirectory(prefix="vk-cli-") as tmp:
        files = {k: os.path.join(tmp, k) for k in ("out", "err", "code")}
        request = {"argv": list(argv), "cwd": str(cwd or os.getcwd()), "env": env, **files}
        pid = _server.pid_for(request)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["visionkit", *argv], timeout)
            time.sleep(0.02)
        code_text = Path(files["code"]).read_text() if os.path.exists(files["code"]) else ""
        code = int(code_text) if code_text.strip() else -signal.SIGKILL  # killed before it could say
        out, err = (Path(files[k]).read_text(errors="replace") for k in ("out", "err"))
    return subprocess.CompletedProcess([sys.executable, "-m", "visionkit", *argv], code, out, err)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (reaped by the kernel as soon as it exits, since the server ignores SIGCHLD) does not linger
    return True


def close() -> None:
    _server.close()

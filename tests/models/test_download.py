"""weights=https://...: download into weights/ from a loopback server, resume after a cut, sha256 checks."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from visionkit.errors import CheckpointError
from visionkit.models.download import resolve_weights
from visionkit.models.weights import read_weights


class _Server:
    """Serves ``data`` at /w/model.pth with HTTP Range support; ``cut_first`` sends only half of the first
    response and drops the connection (a download cut mid-file)."""

    def __init__(self, data: bytes, cut_first: bool = False):
        self.data, self.cut = data, cut_first
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path != "/w/model.pth":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                body = server.data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut:
                    server.cut = False
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w/model.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights_bytes(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "src.pth"
    torch.save({"conv.weight": torch.randn(64, 3, 3, 3), "conv.bias": torch.randn(64)}, path)
    return path.read_bytes()


def test_download_resumes_after_a_cut(weights_bytes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = _Server(weights_bytes, cut_first=True)
    try:
        with pytest.raises(CheckpointError, match="cut .*run again to resume"):
            resolve_weights(server.url, verbose=False)
        part = tmp_path / "weights/model.pth.part"
        assert 0 < part.stat().st_size < len(weights_bytes) and not (tmp_path / "weights/model.pth").exists()
        sha = hashlib.sha256(weights_bytes).hexdigest()
        path = resolve_weights(server.url, sha256=sha, verbose=False)
    finally:
        server.close()
    assert path.resolve() == (tmp_path / "weights/model.pth").resolve()
    assert server.ranges == [None, f"bytes={len(weights_bytes) // 2}-"]  # the second request asked for the rest
    assert path.read_bytes() == weights_bytes and not part.exists()
    assert set(read_weights(path).tensors) == {"conv.weight", "conv.bias"}
    # a second run finds the file and downloads nothing
    assert resolve_weights(server.url, sha256=sha, verbose=False) == path and len(server.ranges) == 2


def test_bad_sha256_deletes_the_download(weights_bytes, tmp_path):
    server = _Server(weights_bytes)
    try:
        with pytest.raises(CheckpointError, match="SHA-256 .* not the sha256=0000"):
            resolve_weights(server.url, sha256="0" * 64, verbose=False, folder=tmp_path / "w")
    finally:
        server.close()
    assert list((tmp_path / "w").iterdir()) == []  # neither the file nor a part is left


def test_unreachable_and_missing_urls_are_clear_errors(weights_bytes, tmp_path):
    server = _Server(weights_bytes)
    try:
        with pytest.raises(CheckpointError, match="404"):
            resolve_weights(server.url.replace("model.pth", "nope.pth"), verbose=False, folder=tmp_path)
    finally:
        server.close()
    with pytest.raises(CheckpointError, match="cannot download"):
        resolve_weights(server.url, verbose=False, folder=tmp_path / "x")  # the server is gone

"""A live Label Studio import from a server that misbehaves (a loopback http.server): HTTP 500 then success, 500
for ever, no answer before the timeout, the connection closed in the middle of the export. Transient failures are
retried with backoff; when they last, one clear error and nothing written."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

pytest.importorskip("label_studio_sdk")

from visionkit.data import commands  # noqa: E402
from visionkit.data.labelstudio import sources  # noqa: E402
from visionkit.errors import DataError  # noqa: E402

CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="a"/></RectangleLabels></View>'
)
TASKS = [
    {
        "id": i,
        "data": {"image": f"/data/upload/1/img{i}.jpg"},
        "annotations": [
            {
                "id": i,
                "was_cancelled": False,
                "ground_truth": False,
                "result": [
                    {
                        "id": f"r{i}",
                        "from_name": "label",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "original_width": 32,
                        "original_height": 32,
                        "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["a"]},
                    }
                ],
            }
        ],
    }
    for i in range(1, 6)
]


class Server:
    """``mode`` for the export request: ok, flaky (two 500s, then ok), error (500 always), slow (answers after
    2 s), cut (promises the whole export, sends half, closes)."""

    def __init__(self, mode: str):
        self.mode, self.exports = mode, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code: int, body: bytes, length: int | None = None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/api/version"):
                    return self.send(200, json.dumps({"edition": "Community", "release": "1.23.0"}).encode())
                if "/export" in self.path:
                    return outer.export(self)
                if self.path.rstrip("/").endswith("/api/projects/1"):
                    return self.send(200, json.dumps({"id": 1, "title": "p", "label_config": CONFIG}).encode())
                self.send(404, b'{"detail": "not found"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def export(self, h):
        self.exports += 1
        body = json.dumps(TASKS).encode()
        if self.mode == "error" or (self.mode == "flaky" and self.exports <= 2):
            return h.send(500, b'{"detail": "internal error"}')
        if self.mode == "slow":
            time.sleep(2.0)
        if self.mode == "cut":
            h.send(200, body[: len(body) // 2], length=len(body))
            h.wfile.flush()
            h.close_connection = True
            return
        h.send(200, body)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for t in TASKS:
        cv2.imwrite(str(folder / f"img{t['id']}.jpg"), np.full((32, 32, 3), 128, np.uint8))
    return folder


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(sources, "RETRY_WAIT_S", 0.05)


def run(server, images, out, **kw):
    return commands.import_labelstudio(
        src=server.url, project=1, token="t0ken", images=str(images), out=str(out), verbose=True, **kw
    )


def test_a_500_then_success_is_retried_and_imports(images, tmp_path, capsys):
    server = Server("flaky")
    try:
        report = run(server, images, tmp_path / "ds", retries=3)
    finally:
        server.close()
    assert server.exports == 3  # two 500s, then the export
    assert report["images_written"] == 5
    assert len(list((tmp_path / "ds" / "labels").rglob("*.txt"))) == 5  # every task imported
    err = capsys.readouterr().err
    assert "HTTP 500; retrying in 0.05 s (1/3)" in err and "HTTP 500; retrying in 0.1 s (2/3)" in err
    assert (tmp_path / "ds" / "data.yaml").is_file()


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("error", r"HTTP 500"),
        ("slow", r"no answer within timeout=0.5 s"),
        ("cut", r"the connection failed \(RemoteProtocolError|the export was cut short"),
    ],
)
def test_a_server_that_keeps_failing_is_one_error_and_nothing_is_written(images, tmp_path, mode, reason):
    server = Server(mode)
    try:
        with pytest.raises(
            DataError, match=rf"Label Studio at {server.url}, project 1: ({reason}).*, on all 3 attempts"
        ):
            run(server, images, tmp_path / "ds", retries=2, timeout=0.5)
    finally:
        server.close()
    assert server.exports == 3  # the first try and two retries, then it stops
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".*ds*"))  # no half dataset


def test_a_404_is_not_retried(images, tmp_path):
    server = Server("ok")
    try:
        with pytest.raises(DataError, match="project 7: .*404"):
            commands.import_labelstudio(
                src=server.url, project=7, token="t", images=str(images), out=str(tmp_path / "d")
            )
    finally:
        server.close()
    assert server.exports == 0 and not (tmp_path / "d").exists()

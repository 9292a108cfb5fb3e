"""The ML backend against hostile clients: HTTP Basic Auth, no fetching from private addresses on a task's behalf
(loopback servers, a redirect, a host name that resolves to a private address), and bounds on bodies, tasks and
requests in flight. The load benchmark's short run against a real server process is at the end."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import run_cli, serve_labelstudio, train_tiny
from visionkit import Model
from visionkit.errors import DataError, UsageError
from visionkit.serve.fetch import AllowList, Fetcher, RefusedURL, address_kind, resolve

REPO = Path(__file__).resolve().parents[2]
RECT = """<View><Image name="img" value="$picture"/>
  <RectangleLabels name="box" toName="img"><Label value="circle"/><Label value="square"/><Label value="triangle"/>
  <Label value="star"/></RectangleLabels></View>"""
PNG = cv2.imencode(".png", np.full((6, 8, 3), 200, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def detector(shapes_root, tmp_path_factory) -> Model:
    return Model(str(train_tiny("detect", "yolo-n", shapes_root, tmp_path_factory).ckpt_path))


@pytest.fixture
def images(shapes_root, tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, p in enumerate(sorted((shapes_root / "images/val").glob("*.jpg"))[:2]):
        cv2.imwrite(str(folder / f"im{k}.png"), cv2.imread(str(p)))
    return folder


def _client(model: Model, limits=None, auth=None, **kw):
    from starlette.testclient import TestClient

    from visionkit.serve.app import create_app
    from visionkit.serve.prelabeler import PreLabeler

    labeler = PreLabeler(model.ckpt_path, **kw)
    return TestClient(create_app(labeler, limits, auth)), labeler


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class ImageServer:
    """A loopback HTTP server: /img.png answers an image, /redirect?to=URL a 302 to URL; it records each request's
    path, Host and Authorization headers."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Host"), self.headers.get("Authorization")))
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def two_servers():
    a, b = ImageServer(), ImageServer()
    yield a, b
    a.close()
    b.close()


def _fake_dns(monkeypatch, table: dict[str, str]):
    """getaddrinfo answering ``table``'s names with its addresses (and the real resolver for everything else)."""
    real = socket.getaddrinfo

    def fake(host, port, *args, **kw):
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], int(port)))]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


# -- which addresses are refused ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:10.0.0.1", "private"),  # an IPv4-mapped IPv6 address is its IPv4 one
        ("::ffff:127.0.0.1", "loopback"),
        # IPv6 addresses that a tunnel or translator delivers to an IPv4 one are judged by that one
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("8.8.8.8", None),
        ("151.101.1.69", None),
        ("2001:4860:4860::8888", None),
        ("2002:808:808::1", None),  # 6to4 of a public address
        ("64:ff9b::808:808", None),
    ],
)
def test_address_kinds(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_a_stalled_dns_lookup_is_given_up(monkeypatch):
    def stalled(*args, **kwargs):
        time.sleep(3)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    start = time.monotonic()
    with pytest.raises(DataError, match=r"could not resolve host 'images\.example\.com': no answer from DNS within"):
        resolve("images.example.com", 443, timeout=0.2)
    assert time.monotonic() - start < 2


def test_allow_hosts_entries_and_refusals():
    allow = AllowList("images.example.com, cdn.example.org:8443,*.bucket.example.net,10.1.0.0/16,[::1]")
    assert allow.names("IMAGES.example.com.", 80) and allow.names("images.example.com", 1234)
    assert allow.names("cdn.example.org", 8443) and not allow.names("cdn.example.org", 443)
    assert allow.names("a.b.bucket.example.net", 443) and allow.names("bucket.example.net", 443)
    assert not allow.names("evilbucket.example.net", 443) and not allow.names("example.com", 80)
    assert allow.holds(ipaddress.ip_address("10.1.200.3")) and not allow.holds(ipaddress.ip_address("10.2.0.1"))
    assert allow.holds(ipaddress.ip_address("::1")) and not allow.any_public
    assert AllowList(["*"]).any_public and not AllowList(None)
    for bad in ("http://x.com/path", "user@host", "a.com:notaport"):
        with pytest.raises(UsageError, match="allow_hosts entry"):
            AllowList(bad)


# -- fetching: loopback servers allowed and refused ------------------------------------------------------------
def test_only_label_studio_and_allowed_hosts_are_fetched(two_servers):
    a, b = two_servers
    # nothing allowed and no Label Studio: refused before any connection
    with pytest.raises(RefusedURL, match=r"not the Label Studio server .*allow_hosts=127\.0\.0\.1"):
        Fetcher().fetch(f"{a.url}/img.png", {})
    # a public-only wildcard does not open loopback
    with pytest.raises(RefusedURL, match="resolves to 127.0.0.1, a loopback address"):
        Fetcher("*").fetch(f"{a.url}/img.png", {})
    # the same address written as a decimal number or as IPv4-mapped IPv6 is the same address
    port = a.port
    with pytest.raises(RefusedURL, match="loopback address"):
        Fetcher("*").fetch(f"http://2130706433:{port}/img.png", {})
    with pytest.raises(RefusedURL, match="loopback address"):
        Fetcher("*").fetch(f"http://[::ffff:127.0.0.1]:{port}/img.png", {})
    with pytest.raises(RefusedURL, match=r"resolves to 2002:7f00:1::1 \(IPv4 127\.0\.0\.1\), a loopback address"):
        Fetcher("*").fetch(f"http://[2002:7f00:1::1]:{port}/img.png", {})
    assert a.seen == []
    # Label Studio's origin is allowed (with its token), and so is a host named in allow_hosts (without it)
    assert Fetcher().fetch(f"{a.url}/img.png", {"Authorization": "Token t"}, trusted=a.url) == PNG
    assert Fetcher(f"127.0.0.1:{b.port}").fetch(f"{b.url}/img.png", {"Authorization": "Token t"}, trusted=a.url) == PNG
    assert a.seen[-1][2] == "Token t" and b.seen[-1][2] is None
    # a port of an allowed host that is not the allowed one: refused
    with pytest.raises(RefusedURL, match="not the Label Studio server"):
        Fetcher(f"127.0.0.1:{b.port}").fetch(f"{a.url}/img.png", {}, trusted=None)
    # only http and https; no credentials in URLs
    with pytest.raises(RefusedURL, match="only http and https"):
        Fetcher("*").fetch("file:///etc/passwd", {})
    with pytest.raises(RefusedURL, match="credentials in a URL"):
        Fetcher(f"127.0.0.1:{a.port}").fetch(f"http://u:p@127.0.0.1:{a.port}/img.png", {})


def test_a_redirect_to_a_refused_address_is_not_followed(two_servers):
    a, b = two_servers
    target = f"{b.url}/img.png"
    refused = rf"{re.escape(target)}' \(redirected from '{re.escape(a.url)}.*resolves to 127\.0\.0\.1, a loopback"
    with pytest.raises(RefusedURL, match=refused):
        Fetcher().fetch(f"{a.url}/redirect?to={target}", {"Authorization": "Token t"}, trusted=a.url)
    assert b.seen == []  # the refused hop was never requested
    with pytest.raises(RefusedURL, match="only http and https"):
        Fetcher().fetch(f"{a.url}/redirect?to=file:///etc/passwd", {}, trusted=a.url)
    # allowed, the redirect is followed; the token stays at Label Studio's origin
    got = Fetcher(f"127.0.0.1:{b.port}").fetch(
        f"{a.url}/redirect?to={target}", {"Authorization": "Token t"}, trusted=a.url
    )
    assert got == PNG and b.seen == [("/img.png", f"127.0.0.1:{b.port}", None)]
    # a redirect loop ends after max_redirects hops
    loop = f"{a.url}/redirect?to={a.url}/redirect?to={a.url}/redirect?to={a.url}/img.png"
    with pytest.raises(RefusedURL, match="more than 2 redirects"):
        Fetcher(max_redirects=2).fetch(loop, {}, trusted=a.url)


def test_a_name_that_resolves_to_a_private_address_is_refused(two_servers, monkeypatch):
    a, _ = two_servers
    _fake_dns(
        monkeypatch,
        {"pics.example.test": "10.0.0.7", "meta.example.test": "169.254.169.254", "mine.example.test": "127.0.0.1"},
    )
    with pytest.raises(RefusedURL, match=r"'pics\.example\.test' resolves to 10\.0\.0\.7, a private address"):
        Fetcher("*").fetch("http://pics.example.test/a.png", {})
    with pytest.raises(RefusedURL, match="169.254.169.254, a link-local address"):
        Fetcher("*.example.org").fetch(
            f"{a.url}/redirect?to=http://meta.example.test/latest/meta-data", {}, trusted=a.url
        )
    # a name the user allows is fetched from the address it resolved to (checked once, connected to that one):
    # the request reaches the loopback server with the name in Host
    got = Fetcher("mine.example.test").fetch(f"http://mine.example.test:{a.port}/img.png", {})
    assert got == PNG and a.seen[-1][:2] == ("/img.png", f"mine.example.test:{a.port}")
    # a network in allow_hosts allows the addresses in it, whatever the name
    assert Fetcher("127.0.0.0/8").fetch(f"http://mine.example.test:{a.port}/img.png", {}) == PNG


def test_predict_says_why_an_image_was_refused(detector, two_servers, monkeypatch):
    a, _ = two_servers
    _fake_dns(monkeypatch, {"internal.example.test": "192.168.0.10"})
    client, _ = _client(detector, allow_hosts="*")
    tasks = [
        {"id": 1, "data": {"picture": "http://169.254.169.254/latest/meta-data/iam/x.png"}},
        {"id": 2, "data": {"picture": "http://internal.example.test/a.png"}},
        {"id": 3, "data": {"picture": f"{a.url}/img.png"}},
    ]
    results = client.post("/predict", json={"tasks": tasks, "label_config": RECT}).json()["results"]
    assert [r["result"] for r in results] == [[], [], []]
    assert results[0]["error"].startswith("task 1: refused") and "link-local" in results[0]["error"]
    assert "192.168.0.10, a private address" in results[1]["error"]
    assert "loopback" in results[2]["error"] and a.seen == []
    # the server Label Studio named in /setup is allowed: its uploads are fetched (here, a loopback one)
    client, _ = _client(detector)
    assert client.post("/setup", json={"project": "1.1", "schema": RECT, "hostname": a.url}).status_code == 200
    upload = {"id": 4, "data": {"picture": "/data/upload/1/abcd1234-img.png"}}
    got = client.post("/predict", json={"tasks": [upload], "label_config": RECT, "project": "1.1"}).json()
    assert "error" not in got["results"][0] and a.seen[-1][0] == "/data/upload/1/abcd1234-img.png"


# -- authentication ----------------------------------------------------------------------------------------------
def test_basic_auth_guards_every_route(detector, images):
    client, _ = _client(detector, auth=("labelstudio", "s3cret:with:colons"), images=str(images))
    body = {"tasks": [{"id": 1, "data": {"picture": "im0.png"}}], "label_config": RECT}
    # /health too: Label Studio sends the credentials there first and reports a 401 on it as wrong settings
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=_basic("labelstudio", "s3cret:with:colons")).json()["status"] == "UP"
    for headers in (
        {},
        _basic("labelstudio", "wrong"),
        _basic("someone", "s3cret:with:colons"),
        _basic("labelstudio", "s3cret:with"),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer s3cret:with:colons"},
    ):
        r = client.post("/predict", json=body, headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Basic realm="visionkit"')
        assert "s3cret" not in r.text
    assert client.get("/versions").status_code == 401 and client.post("/setup", json={}).status_code == 401
    ok = client.post("/predict", json=body, headers=_basic("labelstudio", "s3cret:with:colons"))
    assert ok.status_code == 200 and "error" not in ok.json()["results"][0]
    # a non-ASCII password works as UTF-8 (RFC 7617) and as Latin-1 (what Label Studio's requests client sends)
    client, _ = _client(detector, auth=("ls", "pässwort"))
    for encoding in ("utf-8", "latin-1"):
        token = base64.b64encode("ls:pässwort".encode(encoding)).decode()
        assert client.get("/health", headers={"Authorization": f"Basic {token}"}).status_code == 200
    assert client.get("/health", headers=_basic("ls", "passwort")).status_code == 401


def test_cli_refuses_a_public_host_without_auth_and_never_prints_the_secret(tmp_path):
    missing = tmp_path / "nope.pt"
    r = run_cli("serve", "labelstudio", f"model={missing}", "host=0.0.0.0")
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0 without authentication" in r.stderr
    assert "VISIONKIT_SERVE_AUTH" in r.stderr and "insecure=True" in r.stderr
    # with auth (or insecure=True) it goes on, to the next check: the missing model
    r = run_cli("serve", "labelstudio", f"model={missing}", "host=0.0.0.0", "auth=ls:1:30")
    assert "does not exist" in r.stderr and "1:30" not in r.stderr + r.stdout
    r = run_cli("serve", "labelstudio", f"model={missing}", "host=0.0.0.0", env={"VISIONKIT_SERVE_AUTH": "ls:pw"})
    assert "does not exist" in r.stderr
    r = run_cli("serve", "labelstudio", f"model={missing}", "host=0.0.0.0", "insecure=True")
    assert "does not exist" in r.stderr and "WARNING: listening on 0.0.0.0 without authentication" in r.stderr
    r = run_cli("serve", "labelstudio", f"model={missing}", "auth=nocolonsecret")
    assert r.returncode == 2 and "must be user:password" in r.stderr and "nocolonsecret" not in r.stderr
    r = run_cli("serve", "labelstudio", f"model={missing}", "allow_hosts=http://x.com/a")
    assert r.returncode == 2 and "allow_hosts entry" in r.stderr


def test_auth_values_are_taken_as_typed():
    from visionkit.serve.commands import parse_auth

    assert parse_auth("ls:1:30") == ("ls", "1:30")
    assert parse_auth(None) is None
    with pytest.raises(UsageError, match="user:password"):
        parse_auth(":pw")
    with pytest.raises(UsageError, match="user:password"):
        parse_auth(90)  # what YAML would have made of 1:30


# -- bounds ------------------------------------------------------------------------------------------------------
def test_bodies_tasks_and_requests_in_flight_are_bounded(detector, images, monkeypatch):
    from visionkit.serve.app import Limits

    limits = Limits(max_body_bytes=4000, max_tasks=5, max_requests=2)
    client, labeler = _client(detector, limits, images=str(images))
    task = {"id": 1, "data": {"picture": "im0.png"}}
    # a declared length over the limit: 413 from the header alone
    r = client.post("/predict", content=b"{}", headers={"Content-Length": "999999999"})
    assert r.status_code == 413 and "max_body_mb" in r.json()["error"]
    # a streamed body (no length) over the limit: 413 once the count passes it
    chunks = iter([b'{"tasks": [', b" " * 3000, b" " * 3000, b"]}"])
    r = client.post("/predict", content=chunks)
    assert r.status_code == 413 and "larger than 4000 bytes" in r.json()["error"]
    r = client.post("/predict", json={"tasks": [task] * 6, "label_config": RECT})
    assert r.status_code == 413 and "6 tasks, more than the server's max_tasks=5" in r.json()["error"]
    assert client.post("/predict", json={"tasks": [task] * 5, "label_config": RECT}).status_code == 200
    # two requests in flight (held inside the model); the third gets 429 with Retry-After; /health answers at once
    release, entered = threading.Event(), threading.Semaphore(0)
    predict = labeler.predict

    def held(body):
        entered.release()
        release.wait(30)
        return predict(body)

    monkeypatch.setattr(labeler, "predict", held)
    body = {"tasks": [task], "label_config": RECT}
    with client:
        answers: list[int] = []
        workers = [
            threading.Thread(target=lambda: answers.append(client.post("/predict", json=body).status_code))
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
        busy = client.post("/predict", json=body)
        assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
        assert "max_requests=2" in busy.json()["error"]
        t = time.monotonic()
        assert client.get("/health").status_code == 200 and time.monotonic() - t < 1.0
        release.set()
        for w in workers:
            w.join(30)
        assert answers == [200, 200]
        assert client.post("/predict", json=body).status_code == 200  # slots come back


@pytest.mark.slow
def test_real_server_refuses_a_huge_body_before_reading_it_and_keeps_the_secret(detector, images):
    """On the real server process: a declared 1 GB body gets 413 while only a few bytes of it were sent; with
    auth from the environment, requests without it get 401; the password appears nowhere in the output."""
    import os

    secret = "pw-7f3a9c-never-printed"
    env = {**os.environ, "VISIONKIT_SERVE_AUTH": f"labelstudio:{secret}"}
    proc, url = serve_labelstudio(detector.ckpt_path, f"images={images}", env=env)
    try:
        port = int(url.rsplit(":", 1)[1])
        auth = _basic("labelstudio", secret)["Authorization"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n"
                f'Content-Length: {1 << 30}\r\n\r\n{{"tasks": ['.encode()
            )
            t = time.monotonic()
            reply = s.recv(65536).decode(errors="replace")
            assert reply.startswith("HTTP/1.1 413") and time.monotonic() - t < 5, reply[:300]
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{url}/predict", data=b"{}", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("Basic")
        body = {"tasks": [{"id": 1, "data": {"picture": "im0.png"}}], "label_config": RECT}
        req = urllib.request.Request(f"{url}/predict", data=json.dumps(body).encode(), headers={"Authorization": auth})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())["results"][0]
        assert "error" not in answer and answer["model_version"].startswith("best.pt@")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc.log.seek(0)
    out = proc.log.read()
    proc.log.close()
    assert "authentication: HTTP Basic" in out and secret not in out


@pytest.mark.slow
def test_bench_serve_short_run_answers_every_request(detector, images, tmp_path):
    """tools/bench_serve.py for a few seconds against a real server process: every request answered 200 or 429,
    none dropped or 5xx, /health always under 1 s, with auth on (and the password nowhere in the server's log)."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools/bench_serve.py"),
            "--seconds", "6",
            "--clients", "6",
            "--tasks", "4",
            "--max-requests", "2",
            f"--model={detector.ckpt_path}",
            f"--images={images}",
            "--auth=bench:pw-bench-secret",
            f"--json={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert r.returncode == 0 and report["passed"], r.stdout[-4000:] + r.stderr[-2000:]
    assert report["status_5xx"] == 0 and report["dropped"] == 0 and report["server_alive"]
    assert report["answered"].get("200", 0) > 0 and set(report["answered"]) <= {"200", "429"}
    assert report["answered"].get("429", 0) > 0  # 6 clients against 2 slots: the limit was reached and answered
    assert report["health_max_s"] < 1.0 and report["health_samples"] > 10
    assert report["rss_peak_mb"] >= report["rss_start_mb"] > 0 and not report["secret_in_log"]
    assert report["rss_peak_mb"] - report["rss_start_mb"] < 400  # bounded: the model plus a few batches in flight

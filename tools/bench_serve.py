"""Load on the Label Studio ML backend: concurrent clients posting /predict to one real server process.

Starts ``visionkit serve labelstudio`` on a loopback port (a tiny detector trained here on generated shapes unless
--model is given; images from a local folder, so the server fetches nothing), then for --seconds runs --clients
threads, each posting /predict with --tasks tasks in a loop (a 429 is waited out as its Retry-After says, capped
at one second), while another thread times /health every 0.1 s and the server's resident memory is sampled from
/proc. Reports every answer by status, dropped connections, throughput in tasks/s, p50/p95 latency of answered
requests, /health latency and the server's peak RSS (VmHWM).

Passes (exit 0) when every request got 200 or 429 (no 5xx, nothing dropped) and /health always answered within
1 s.

    python tools/bench_serve.py [--seconds 60] [--clients 16] [--tasks 8] [--model best.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

RECT = """<View><Image name="img" value="$image"/>
  <RectangleLabels name="box" toName="img"><Label value="circle"/><Label value="square"/><Label value="triangle"/>
  <Label value="star"/></RectangleLabels></View>"""


def tiny_detector(work: Path) -> tuple[Path, Path]:
    """A one-epoch detector on generated shapes (64 px) and the folder of its validation images."""
    from visionkit import Model
    from visionkit.data.synthetic import generate_shapes

    root = generate_shapes(work / "shapes", n_train=16, n_val=8, size=64, verbose=False)
    m = Model("yolo-n", task="detect")
    m.train(
        data=str(root / "data.yaml"),
        epochs=1,
        imgsz=64,
        batch=8,
        workers=0,
        close_mosaic=0,
        plots=False,
        verbose=False,
        project=str(work / "runs"),
    )
    return Path(m.ckpt_path), root / "images" / "val"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/PID/status memory field in MB (VmRSS: now; VmHWM: the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: Path, images: Path, port: int, extra: list[str], env: dict[str, str], log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "visionkit", "serve", "labelstudio", f"model={model}", f"port={port}"]
    cmd += [f"images={images}", "log_level=warning", *extra]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited with {proc.returncode}: {log.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except urllib.error.HTTPError as e:  # 401: up, and asking for credentials
            if e.code == 401:
                return proc
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not answer /health in 180 s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    if args.model:
        model, images = Path(args.model), Path(args.images)
    else:
        model, images = tiny_detector(work)
    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not names:
        raise SystemExit(f"no .jpg or .png images in {images}")
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ}
    headers = {"Content-Type": "application/json"}
    if args.auth:  # the way a user keeps it out of `ps`: in the environment
        env["VISIONKIT_SERVE_AUTH"] = args.auth
        headers["Authorization"] = "Basic " + base64.b64encode(args.auth.encode()).decode()
    log = tempfile.TemporaryFile("w+")
    extra = [f"max_requests={args.max_requests}", f"batch={args.batch}"]
    proc = start_server(model, images, port, extra, env, log)
    rss_start = rss_mb(proc.pid)
    lock = threading.Lock()
    counts: dict[str, int] = {}
    latencies: list[float] = []
    health: list[float] = []
    rss: list[float] = []
    tasks_done = [0]
    errors: list[str] = []
    stop = time.monotonic() + args.seconds

    def count(key: str, message: str | None = None) -> None:
        with lock:
            counts[key] = counts.get(key, 0) + 1
            if message and len(errors) < 10:
                errors.append(message)

    def client(k: int) -> None:
        i = 0
        while time.monotonic() < stop:
            tasks = [
                {"id": k * 1_000_000 + i * args.tasks + j, "data": {"image": names[(i + j) % len(names)]}}
                for j in range(args.tasks)
            ]
            body = json.dumps({"tasks": tasks, "label_config": RECT, "project": "1.1"}).encode()
            req = urllib.request.Request(f"{url}/predict", data=body, headers=headers)
            t = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=args.timeout) as r:
                    answer = json.loads(r.read())
                dt = time.monotonic() - t
                bad = [x for x in answer["results"] if "error" in x]
                if len(answer["results"]) != len(tasks) or bad:
                    count("wrong", f"200 with {len(answer['results'])} results, {len(bad)} errors")
                else:
                    count("200")
                    with lock:
                        latencies.append(dt)
                        tasks_done[0] += len(tasks)
            except urllib.error.HTTPError as e:
                e.read()
                if e.code == 429:
                    count("429")
                    wait = float(e.headers.get("Retry-After") or 1)
                    time.sleep(max(0.0, min(wait, 1.0, stop - time.monotonic())))
                else:
                    count("5xx" if e.code >= 500 else str(e.code), f"HTTP {e.code}")
            except Exception as e:  # refused, reset, timed out: a dropped request
                count("dropped", f"{type(e).__name__}: {e}")
            i += 1

    def health_sampler() -> None:
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/health", headers=headers), timeout=10).read()
                health.append(time.monotonic() - t)
            except Exception as e:
                health.append(float("inf"))
                count("health_failed", f"/health: {type(e).__name__}: {e}")
            rss.append(rss_mb(proc.pid))
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    threads.append(threading.Thread(target=health_sampler))
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        peak = rss_mb(proc.pid, "VmHWM")
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.seek(0)
    server_log = log.read()
    requests = sum(v for k, v in counts.items() if k != "health_failed")
    report = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "tasks_per_request": args.tasks,
        "max_requests": args.max_requests,
        "requests": requests,
        "answered": {k: v for k, v in sorted(counts.items()) if k not in ("dropped", "health_failed")},
        "status_5xx": counts.get("5xx", 0),
        "dropped": counts.get("dropped", 0),
        "wrong_answers": counts.get("wrong", 0),
        "server_alive": alive,
        "tasks_per_s": round(tasks_done[0] / elapsed, 1),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "health_samples": len(health),
        "health_max_s": round(max(health), 3) if health else None,
        "health_p95_s": round(percentile(health, 95), 3),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss[-1], 1) if rss else None,
        "rss_peak_mb": round(peak, 1),
        "errors": errors,
        "secret_in_log": bool(args.auth) and args.auth.split(":", 1)[1] in server_log,
    }
    report["passed"] = (
        alive
        and report["status_5xx"] == 0
        and report["dropped"] == 0
        and report["wrong_answers"] == 0
        and set(report["answered"]) <= {"200", "429"}
        and counts.get("200", 0) > 0
        and bool(health)
        and max(health) < 1.0
        and not report["secret_in_log"]
    )
    if not report["passed"]:
        report["server_log_tail"] = server_log[-3000:]
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the clients post (default 60)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--tasks", type=int, default=8, help="tasks per /predict (default 8)")
    p.add_argument("--max-requests", type=int, default=4, help="the server's max_requests (default 4, its default)")
    p.add_argument("--batch", type=int, default=8, help="the server's batch (default 8)")
    p.add_argument("--model", help="a trained checkpoint (default: train a tiny detector on generated shapes)")
    p.add_argument("--images", help="folder of the images the tasks name (needed with --model)")
    p.add_argument("--auth", help="user:password: the server requires it (given by $VISIONKIT_SERVE_AUTH)")
    p.add_argument("--port", type=int, help="loopback port (default: a free one)")
    p.add_argument("--timeout", type=float, default=120.0, help="client timeout per request in seconds")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)
    if args.model and not args.images:
        p.error("--model needs --images (a folder of the images the tasks name)")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    print(
        f"{report['requests']} requests in {report['seconds']} s from {report['clients']} clients: "
        f"{report['answered']}, 5xx {report['status_5xx']}, dropped {report['dropped']}; "
        f"{report['tasks_per_s']} tasks/s, latency p50 {report['latency_p50_s']} s p95 {report['latency_p95_s']} s; "
        f"/health max {report['health_max_s']} s; server RSS peak {report['rss_peak_mb']} MB "
        f"(start {report['rss_start_mb']} MB) -> {'PASS' if report['passed'] else 'FAIL'}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

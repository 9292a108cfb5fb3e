"""Integration test against a REAL Label Studio server on 127.0.0.1 (installed by `make test` in its own
virtualenv, .venv-labelstudio). It skips, with the reason printed, only when the server is not installed."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, run_cli, serve_labelstudio, spread_head, spread_segmenter_head, train_tiny

pytestmark = pytest.mark.slow  # a real Label Studio server: `pytest -m "not slow"` leaves it out
REPO = Path(__file__).resolve().parents[2]
TOKEN = "visionkit-test-token"
LS = FIXTURES / "labelstudio"
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="road"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="sky"/></BrushLabels>
</View>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    exe = Path(os.environ.get("VISIONKIT_LABEL_STUDIO", REPO / ".venv-labelstudio/bin/label-studio"))
    if not exe.is_file():
        reason = f"Label Studio is not installed ({exe} missing; `make test` installs it into .venv-labelstudio)"
        print(reason)
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("labelstudio")
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": "test@example.com",
        "LABEL_STUDIO_PASSWORD": "visionkit-pass",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "OMP_NUM_THREADS": "1",
        # let it reach the ML backend test's server on 127.0.0.1: the backend itself, and the webhook Label Studio
        # 1.23 registers beside it (checked by the SSRF guard)
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
    }
    log = open(data / "server.log", "w")
    proc = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # cold start runs the database migrations (about a minute here)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with {proc.returncode}:\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(
                    f"label-studio did not answer /health in 300 s:\n{(data / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _upload(url: str, project: int, path: Path) -> None:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{url}/api/projects/{project}/import",
        data=body,
        method="POST",
        headers={"Authorization": f"Token {TOKEN}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert json.loads(urllib.request.urlopen(req, timeout=60).read())["task_count"] == 1


def _region(rid, rtype, value, control):
    return {
        "id": rid,
        "from_name": control,
        "to_name": "image",
        "type": rtype,
        "original_width": 320,
        "original_height": 200,
        "image_rotation": 0,
        "value": value,
    }


def test_import_from_a_live_server(server, tmp_path):
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server, api_key=TOKEN)
    project = client.projects.create(title="visionkit import test", label_config=CONFIG).id
    for name in ("img0.png", "img5.png"):
        _upload(server, project, LS / "images" / name)
    tasks = {Path(t.data["image"]).name.split("-", 1)[1]: t.id for t in client.tasks.list(project=project)}
    brush = json.loads((LS / "task_brush.json").read_text())["annotations"][0]["result"][0]["value"]
    client.annotations.create(
        id=tasks["img0.png"],
        was_cancelled=False,
        result=[
            _region(
                "c1",
                "rectanglelabels",
                {"x": 10, "y": 10, "width": 40, "height": 50, "rotation": 0, "rectanglelabels": ["cat"]},
                "box",
            ),
            _region(
                "d1",
                "rectanglelabels",
                {"x": 50, "y": 25, "width": 20, "height": 10, "rotation": 30, "rectanglelabels": ["dog"]},
                "box",
            ),
            _region(
                "p1",
                "polygonlabels",
                {"points": [[10, 10], [60, 12.5], [55, 70], [12, 65]], "closed": True, "polygonlabels": ["road"]},
                "poly",
            ),
        ],
    )
    client.annotations.create(
        id=tasks["img5.png"],
        was_cancelled=False,
        result=[
            _region("s1", "brushlabels", {"format": "rle", "rle": brush["rle"], "brushlabels": ["sky"]}, "brush"),
            _region(
                "c2",
                "rectanglelabels",
                {"x": 5, "y": 50, "width": 30, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]},
                "box",
            ),
        ],
    )
    client.annotations.create(
        id=tasks["img5.png"],
        was_cancelled=True,
        result=[
            _region(
                "x1",
                "rectanglelabels",
                {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0, "rectanglelabels": ["dog"]},
                "box",
            )
        ],
    )

    out = tmp_path / "ds"
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={server}",
        f"project={project}",
        f"token={TOKEN}",
        f"out={out}",
        "val=0",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    report = json.loads((out / "import_report.json").read_text())
    assert report["regions"] == {"in_export": 6, "written": 5, "skipped": 1}
    assert report["skipped_regions"][0]["reason"] == "cancelled annotation"
    assert report["written_by_kind"] == {
        "brushlabels": {"sky": 1},
        "polygonlabels": {"road": 1},
        "rectanglelabels": {"cat": 2, "dog": 1},
    }
    assert report["rotated_boxes"] == 1
    assert report["classes"]["names"] == ["cat", "dog", "road", "sky"]  # the server's labeling config order
    # images came over HTTP from the server, byte for byte, with the upload hash removed from their names
    for name in ("img0.png", "img5.png"):
        assert (out / "images/train" / name).read_bytes() == (LS / "images" / name).read_bytes()
    import cv2

    mask = cv2.imread(str(out / "masks/train/img5.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask == 4, np.load(LS / "brush_mask_sky.npy") >= 128)  # sky = class 3 → 4
    assert (out / "labels/train/img0.txt").read_text().count("\n") == 3

    # the token may also come from the environment
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={server}",
        f"project={project}",
        f"out={out}",
        "val=0",
        "exist_ok",
        cwd=tmp_path,
        env={"LABEL_STUDIO_API_KEY": TOKEN},
    )
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "data",
        "import",
        "labelstudio",
        f"src={server}",
        f"project={project}",
        "token=wrong-token",
        f"out={tmp_path / 'no'}",
        cwd=tmp_path,
    )
    assert r.returncode == 1 and not (tmp_path / "no").exists()


SHAPES = ["circle", "square", "triangle", "star"]
PRELABEL_CONFIGS = {
    "detect": '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
    + "".join(f'<Label value="{n}"/>' for n in SHAPES)
    + "</RectangleLabels></View>",
    "segment": '<View><Image name="image" value="$image"/><BrushLabels name="paint" toName="image">'
    + "".join(f'<Label value="{n}"/>' for n in SHAPES)
    + "</BrushLabels></View>",
}


def test_ml_backend_prelabels_a_live_project(server, shapes_root, tmp_path_factory, tmp_path):
    """Label Studio asks `visionkit serve labelstudio` for predictions on its tasks (images fetched from Label
    Studio with the token /setup gave) and stores them; each region matches the model's own prediction. The backend
    requires HTTP Basic Auth, and Label Studio connects with its own Basic Auth setting for ML backends (a backend
    connected without it is refused)."""
    import cv2
    from label_studio_sdk import LabelStudio

    from visionkit import Model
    from visionkit.data.labelstudio.rle import decode_brush_mask

    files = []
    for k, p in enumerate(sorted((shapes_root / "images/val").glob("*.jpg"))[:3]):
        img = cv2.imread(str(p))
        img = cv2.resize(img, (80, 56)) if k == 1 else img  # one non-square image
        files.append(tmp_path / f"shape{k}.png")
        cv2.imwrite(str(files[-1]), img)
    client = LabelStudio(base_url=server, api_key=TOKEN)
    for task_name, model_name, spread in (
        ("detect", "yolo-n", spread_head),
        ("segment", "unet-n", spread_segmenter_head),
    ):
        trained = train_tiny(task_name, model_name, shapes_root, tmp_path_factory)
        spread(trained)
        model = Model(str(trained.ckpt_path))
        project = client.projects.create(
            title=f"visionkit prelabel {task_name}", label_config=PRELABEL_CONFIGS[task_name]
        ).id
        for f in files:
            _upload(server, project, f)
        secret = f"pw-{uuid.uuid4().hex}"
        env = {**os.environ, "VISIONKIT_SERVE_AUTH": f"labelstudio:{secret}"}
        proc, url = serve_labelstudio(model.ckpt_path, "conf=0.25", env=env)
        try:
            with pytest.raises(Exception, match="authentication parameters were either not provided or are"):
                client.ml.create(url=url, project=project, title="no auth")  # Label Studio's own check refuses it
            client.ml.create(
                url=url,
                project=project,
                title="visionkit",
                auth_method="BASIC_AUTH",
                basic_auth_user="labelstudio",
                basic_auth_pass=secret,
            )
            client.actions.create(
                id="retrieve_tasks_predictions", project=project, selected_items={"all": True, "excluded": []}
            )
            names = {t.id: Path(t.data["image"]).name.split("-", 1)[1] for t in client.tasks.list(project=project)}
            predictions = list(client.predictions.list(project=project))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        proc.log.seek(0)
        log = proc.log.read()
        proc.log.close()
        assert len(predictions) == len(files), log[-3000:]
        assert secret not in log and "401" in log  # the refused connection was logged, the password never
        for p in predictions:
            assert p.model_version.startswith("best.pt@")
            thresholds = {"conf": 0.25} if "conf" in model.task.keys else {}  # the server ignores conf= without one
            want = model.infer([cv2.imread(str(tmp_path / names[p.task]))], **thresholds)[0]
            w, h = want["width"], want["height"]
            if task_name == "detect":
                assert len(p.result) == len(want["detections"]) > 0
                for region, d in zip(p.result, want["detections"]):
                    v = region["value"]
                    assert v["rectanglelabels"] == [d["name"]]
                    x1, y1, x2, y2 = d["box"]
                    expected = [x1 / w * 100, y1 / h * 100, (x2 - x1) / w * 100, (y2 - y1) / h * 100]
                    assert np.abs(np.subtract([v["x"], v["y"], v["width"], v["height"]], expected)).max() <= 0.01
            else:
                painted = {
                    r["value"]["brushlabels"][0]: decode_brush_mask(r["value"]["rle"], h, w) == 255 for r in p.result
                }
                expected = {a["name"]: want["_mask"] == a["class"] for a in want["classes"] if a["class"] != 0}
                assert painted.keys() == expected.keys() and len(expected) >= 1
                assert all(np.array_equal(painted[n], expected[n]) for n in expected)

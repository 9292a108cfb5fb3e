"""report.html: one self-contained page per run, checked in a real headless Chromium (Playwright): it loads with
no console errors and no request leaving the page, and shows every section."""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from visionkit.runs.report import SECTIONS, write_report

CHROMIUM = os.environ.get("VISIONKIT_CHROMIUM", "/usr/bin/chromium")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_is_one_self_contained_file(logged_run):
    page = (logged_run["run"] / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    srcs = [a["src"] for t, a in parser.tags if t == "img"]
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert [a["id"] for t, a in parser.tags if t == "section"] == list(SECTIONS)


def test_report_renders_in_headless_chromium_with_every_section(logged_run):
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `apt-get install -y --no-install-recommends chromium` (make test does it "
            f"when run as root) or set VISIONKIT_CHROMIUM to a Chromium binary"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    report = logged_run["run"] / "report.html"
    errors, outside = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("data:", "file:")) else outside.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            for section in SECTIONS:
                box = page.locator(f"section#{section}")
                assert box.is_visible(), section
                assert box.locator("h2").inner_text().strip(), section
            # every embedded image decoded (a broken data: URI has naturalWidth 0)
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            assert len(widths) >= 4 and min(widths) > 0
            assert page.locator("#plots img[alt='confusion_matrix.png']").count() == 1
            assert page.locator("#curves img").count() == 1
            assert page.locator("#predictions figure img").count() == 6  # six of the eight validation images
            for name in ("circle", "square", "star", "triangle"):  # the per-class table of the final validation
                assert name in page.locator("#per-class pre").inner_text()
            assert "step" in page.locator("#time").inner_text()
            assert "top1" in page.locator("#summary").inner_text()
        finally:
            browser.close()
    assert errors == [] and outside == []


def test_report_of_a_run_without_plots_draws_its_curves(logged_run, tmp_path):
    run = tmp_path / "classify" / "train"
    shutil.copytree(logged_run["run"], run)
    for png in run.glob("*.png"):
        png.unlink()
    (run / "run.json").unlink()
    page = write_report(run).read_text()
    assert page.count('<section id="') == len(SECTIONS)
    assert page.count("data:image/png;base64,") == 1  # the curves, drawn from results.csv
    assert "no validation plots" in page and "no sample predictions" in page


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "detect", "segment", "depth"])
def test_every_task_gets_a_report_with_predictions_and_its_table(task, shapes_root, tmp_path):
    import importlib.util
    import warnings

    from tests.conftest import TINY
    from visionkit import Model

    data = shapes_root / ("classify" if task == "classify" else "data.yaml")
    extra = {"imgsz": 64, "close_mosaic": 0} if task == "detect" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = Model(task=task)
        tb = importlib.util.find_spec("tensorboard") is not None
        settings = {**TINY, **extra, "epochs": 1, "plots": True, "tensorboard": tb}
        m.train(**settings, data=str(data), project=str(tmp_path))
    assert not [w for w in caught if "report:" in str(w.message)]  # the sample predictions did not fail
    page = (m.save_dir / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert [a["id"] for t, a in parser.tags if t == "section"] == list(SECTIONS)
    predictions = page.split('<section id="predictions">')[1].split("</section>")[0]
    assert predictions.count("<img ") == 6  # six of the eight validation scenes, drawn by the task
    table = page.split('<section id="per-class">')[1].split("</section>")[0]
    assert "<pre>" in table  # every built-in task's metrics print a table
    if not tb:
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(m.save_dir), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train_loss")] == [1]
    plotted = {p.stem for p in m.save_dir.glob("*.png")} | {p.stem for p in m.save_dir.glob("*.jpg")}
    assert plotted - {"results"} <= set(acc.Tags()["images"])  # the task's plots (a detector's train batch too)
    assert acc.Tags()["graph"] or [w for w in caught if "did not trace" in str(w.message)]

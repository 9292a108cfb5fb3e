"""report.html: one self-contained page per run (styles inline, images base64-embedded, no script, nothing fetched
from the network), so a run can be shared by sending one file. Sections: settings, curves, validation plots,
per-class table, sample predictions and the time split."""

from __future__ import annotations

import base64
import csv
import html
import tempfile
import time
from pathlib import Path

import yaml

from visionkit.runs.record import read_record, status

SECTIONS = ("summary", "settings", "curves", "plots", "per-class", "predictions", "time")
NOT_PLOTS = {"results.png"}  # shown under curves, not under the validation plots

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1em 1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0;max-width:340px}figcaption{font-size:.8em;color:#555;word-break:break-all}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}.none{color:#888;font-style:italic}
.bar{height:14px;background:#4a7bd0;display:inline-block;vertical-align:middle}.settings{columns:2}
"""


def _img(data: bytes, suffix: str, alt: str) -> str:
    mime = "image/png" if suffix.lower() == ".png" else "image/jpeg"
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def _figure(data: bytes, suffix: str, caption: str) -> str:
    return f"<figure>{_img(data, suffix, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _none(text: str) -> str:
    return f'<p class="none">{html.escape(text)}</p>'


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _curves(run_dir: Path) -> str:
    png = run_dir / "results.png"
    if not png.is_file() and (run_dir / "results.csv").is_file():  # plots were off: draw them for the page only
        from visionkit.engine.results import ResultsLog

        with tempfile.TemporaryDirectory() as tmp:
            drawn = ResultsLog(run_dir / "results.csv").plot(Path(tmp) / "results.png")
            return _img(drawn.read_bytes(), ".png", "training curves") if drawn else _none("no epochs logged")
    return _img(png.read_bytes(), ".png", "training curves") if png.is_file() else _none("no epochs logged")


def _table(rows: list[dict]) -> str:
    if not rows:
        return _none("no epochs logged")
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(k, '')))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _times(times: dict[str, float]) -> str:
    total = sum(times.values())
    if total <= 0:
        return _none("no phases were timed")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td><td>{v / total:.0%}</td>"
        f'<td><span class="bar" style="width:{max(1, round(300 * v / total))}px"></span></td></tr>'
        for k, v in times.items()
    )
    return f"<table><tr><th>phase</th><th>time</th><th>share</th><th></th></tr>{rows}</table><p>total {total:.1f} s</p>"


def write_report(run_dir: str | Path, predictions: list[tuple[bytes, str]] | None = None) -> Path:
    """Write ``run_dir``/report.html from what the run folder holds (args.yaml, results.csv, run.json, plots) and
    ``predictions`` (encoded image bytes and a caption each); returns its path."""
    run_dir = Path(run_dir)
    args_path = run_dir / "args.yaml"
    settings = yaml.safe_load(args_path.read_text()) if args_path.is_file() else {}
    record = read_record(run_dir)
    rows = _rows(run_dir / "results.csv")
    name = f"{run_dir.parent.name}/{run_dir.name}"
    metrics = record.get("metrics") or {}

    summary = [
        ("task", record.get("task", run_dir.parent.name)),
        ("model", record.get("model", settings.get("model"))),
        ("data", record.get("data", settings.get("data"))),
        ("status", status(record)),
        ("epochs", f"{len(rows)} of {settings.get('epochs') or '?'}"),
        ("started", time.strftime("%Y-%m-%d %H:%M", time.localtime(record["started"])) if "started" in record else ""),
        *((f"final {k}", f"{v:.4g}" if isinstance(v, float) else v) for k, v in metrics.items()),
    ]
    summary_html = (
        "<table>"
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary)
        + "</table>"
    )
    settings_html = (
        '<table class="settings">'
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
        + "</table>"
        if settings
        else _none("no args.yaml in the run folder")
    )
    plots = [p for p in sorted(run_dir.glob("*.png")) + sorted(run_dir.glob("*.jpg")) if p.name not in NOT_PLOTS]
    plots_html = (
        '<div class="grid">' + "".join(_figure(p.read_bytes(), p.suffix, p.name) for p in plots) + "</div>"
        if plots
        else _none("no validation plots (plots=False, or the run did not validate)")
    )
    table = record.get("table") or ""
    table_html = f"<pre>{html.escape(table)}</pre>" if table.strip() else _none("this task's metrics give no table")
    preds_html = (
        '<div class="grid">' + "".join(_figure(data, ".jpg", caption) for data, caption in predictions) + "</div>"
        if predictions
        else _none("no sample predictions (no best.pt, or no validation images on disk)")
    )
    body = {
        "summary": summary_html,
        "settings": settings_html,
        "curves": _curves(run_dir) + "<h3>results.csv</h3>" + _table(rows),
        "plots": plots_html,
        "per-class": table_html,
        "predictions": preds_html,
        "time": _times(record.get("times") or {}),
    }
    titles = {
        "summary": "Summary",
        "settings": "Settings",
        "curves": "Curves",
        "plots": "Validation plots",
        "per-class": "Per-class metrics",
        "predictions": "Sample predictions (best.pt)",
        "time": "Where the time went",
    }
    sections = "".join(f'<section id="{s}"><h2>{titles[s]}</h2>{body[s]}</section>' for s in SECTIONS)
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # nothing may load from outside the page: no scripts, no fetches, only inline styles and data: images
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>visionkit run {html.escape(name)}</title><style>{STYLE}</style></head>"
        f"<body><h1>visionkit run {html.escape(name)}</h1>{sections}</body></html>"
    )
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out

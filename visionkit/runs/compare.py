"""``visionkit runs``: list the training runs under a project, show one, compare several side by side (settings
that differ, metrics, and one figure of every run's curves). Reads only the run folders: args.yaml, results.csv
and run.json; no model is loaded."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import UsageError
from visionkit.runs.record import read_record, status

IGNORED = {"name"}  # settings that differ between any two runs by construction


def _num(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """results.csv as rows of numbers ([] when missing)."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_settings(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "args.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def is_training_run(path: Path) -> bool:
    return path.is_dir() and ((path / "results.csv").is_file() or (path / "run.json").is_file())


def find_runs(project: str | Path = "runs") -> list[Path]:
    """Every training run folder PROJECT/TASK/NAME, oldest first."""
    root = Path(project)
    if not root.is_dir():
        raise UsageError(f"project '{root}' is not a folder; pass project= the folder runs are saved in (default runs)")
    runs = [p for p in root.glob("*/*") if is_training_run(p)]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, str(p)))


def resolve_run(spec: str | Path, project: str | Path = "runs") -> Path:
    """A run folder from a path, ``TASK/NAME`` or ``NAME`` (under ``project``); an unknown or ambiguous name lists
    what there is."""
    path = Path(spec)
    if is_training_run(path):
        return path
    root = Path(project)
    candidates = [root / spec] if "/" in str(spec) else list(root.glob(f"*/{spec}"))
    found = [p for p in candidates if is_training_run(p)]
    if len(found) == 1:
        return found[0]
    known = [f"{p.parent.name}/{p.name}" for p in (find_runs(root) if root.is_dir() else [])]
    if len(found) > 1:
        raise UsageError(
            f"run '{spec}' is ambiguous under {root}: {', '.join(f'{p.parent.name}/{p.name}' for p in found)}; "
            f"name it as TASK/NAME"
        )
    raise UsageError(
        f"no training run '{spec}' (a run folder holds results.csv); runs under {root}: {', '.join(known) or 'none'}"
    )


def best_of(rows: list[dict], record: dict) -> tuple[str | None, float | None, int | None]:
    """(metric, best value, its epoch): the metric that picks best.pt (run.json says which), else train_loss."""
    key = record.get("fitness_key")
    higher = bool(record.get("higher_is_better", True))
    if not key or not any(isinstance(r.get(key), (int, float)) for r in rows):
        key, higher = "train_loss", False
    scored = [(r[key], r.get("epoch")) for r in rows if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    if not scored:
        return None, None, None
    value, epoch = (max if higher else min)(scored, key=lambda t: t[0])
    return key, value, epoch


def _duration(record: dict, rows: list[dict]) -> float | None:
    if "started" in record and "ended" in record:
        return float(record["ended"]) - float(record["started"])
    spent = [r["epoch_s"] for r in rows if isinstance(r.get("epoch_s"), (int, float))]
    return sum(spent) if spent else None


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def run_summary(run_dir: Path) -> dict[str, Any]:
    """What ``visionkit runs`` shows of one run."""
    run_dir = Path(run_dir)
    settings, rows, record = read_settings(run_dir), read_results(run_dir), read_record(run_dir)
    key, value, epoch = best_of(rows, record)
    return {
        "run": f"{run_dir.parent.name}/{run_dir.name}",
        "path": str(run_dir),
        "task": record.get("task", run_dir.parent.name),
        "model": record.get("model") or settings.get("model") or "-",
        "data": record.get("data") or settings.get("data") or "-",
        "epochs": f"{len(rows)}/{settings.get('epochs') or '?'}",
        "best": f"{key} {value:.4g} (ep {epoch})" if key else "-",
        "best_metric": key,
        "best_value": value,
        "time": fmt_time(_duration(record, rows)),
        "status": status(record) if record else ("finished" if rows and len(rows) == settings.get("epochs") else "-"),
    }


def _print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def list_runs(project: str | Path = "runs", verbose: bool = True) -> list[dict[str, Any]]:
    """Every training run under ``project`` (oldest first): task, model, data, epochs, best metric, time, status."""
    summaries = [run_summary(p) for p in find_runs(project)]
    if verbose:
        if not summaries:
            print(f"no training runs under {project}")
        cols = ["run", "task", "model", "data", "epochs", "best", "time", "status"]
        _print_table(cols, [[s[c] for c in cols] for s in summaries])
    return summaries


def _short(value: Any, width: int = 40) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def show_run(name: str | Path, project: str | Path = "runs", verbose: bool = True) -> dict[str, Any]:
    """One run in full: summary, settings, final metrics, the per-class table, the time split and its files."""
    run_dir = resolve_run(name, project)
    record = read_record(run_dir)
    info = {
        **run_summary(run_dir),
        "settings": read_settings(run_dir),
        "metrics": record.get("metrics") or {},
        "table": record.get("table") or "",
        "times": record.get("times") or {},
        "files": sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()),
    }
    if verbose:
        print(f"run {info['run']} ({run_dir})")
        for key in ("task", "model", "data", "epochs", "best", "time", "status"):
            print(f"  {key:<8} {info[key]}")
        if info["metrics"]:
            print("final metrics (best.pt):")
            for k, v in info["metrics"].items():
                print(f"  {k:<16} {v:.4g}" if isinstance(v, float) else f"  {k:<16} {v}")
        if info["table"]:
            print(info["table"])
        total = sum(info["times"].values())
        if total > 0:
            print("time: " + " ".join(f"{k} {v / total:.0%}" for k, v in info["times"].items()) + f" of {total:.1f}s")
        from visionkit.cfg import load_defaults

        defaults = load_defaults()
        changed = {k: v for k, v in info["settings"].items() if k not in defaults or defaults[k] != v}
        print("settings (not default): " + ", ".join(f"{k}={_short(v, 30)}" for k, v in changed.items()))
        print("files: " + ", ".join(info["files"]))
    return info


def compare_runs(
    *names: str | Path, project: str | Path = "runs", out: str | Path | None = None, verbose: bool = True
) -> dict[str, Any]:
    """Settings that differ and metrics side by side for two or more runs, and one figure of their curves (one
    panel per metric) saved to ``out`` (default PROJECT/compare.png). Returns what it printed and plotted."""
    if len(names) < 2:
        raise UsageError("compare needs at least two runs: visionkit runs compare A B [C ...] (names or folders)")
    dirs = [resolve_run(n, project) for n in names]
    labels = [f"{d.parent.name}/{d.name}" for d in dirs]
    if len(set(labels)) < len(labels):
        labels = [str(d) for d in dirs]
    settings = [read_settings(d) for d in dirs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    differ = {
        k: [s.get(k) for s in settings]
        for k in keys
        if k not in IGNORED and any(s.get(k) != settings[0].get(k) for s in settings)
    }
    results = [read_results(d) for d in dirs]
    records = [read_record(d) for d in dirs]
    metrics: dict[str, list[Any]] = {}
    for i, (rows, rec) in enumerate(zip(results, records)):
        final = rec.get("metrics") or {k: v for k, v in (rows[-1] if rows else {}).items() if k != "epoch"}
        for k, v in final.items():
            metrics.setdefault(k, [None] * len(dirs))[i] = v
        key, value, epoch = best_of(rows, rec)
        if key:
            metrics.setdefault(f"best {key}", [None] * len(dirs))[i] = value
            metrics.setdefault("best epoch", [None] * len(dirs))[i] = epoch
    metrics.setdefault("epochs", [len(r) for r in results])
    curves: dict[str, dict[str, tuple[list, list]]] = {}
    for label, rows in zip(labels, results):
        for key in dict.fromkeys(k for r in rows for k in r):
            pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "epoch" in r]
            if key != "epoch" and pts:
                curves.setdefault(key, {})[label] = ([e for e, _ in pts], [v for _, v in pts])
    plot = Path(out) if out is not None else Path(project) / "compare.png"
    plot_curves(curves, plot)
    if verbose:
        cols = ["", *labels]
        print("settings that differ:" if differ else "settings: all the same")
        if differ:
            _print_table(["setting", *labels], [[k, *(_short(v) for v in vals)] for k, vals in differ.items()])
        print("metrics:")
        _print_table(
            cols,
            [[k, *(f"{v:.4g}" if isinstance(v, float) else _short(v) for v in vals)] for k, vals in metrics.items()],
        )
        print(f"curves: {plot}")
    return {
        "runs": [str(d) for d in dirs],
        "labels": labels,
        "settings": differ,
        "metrics": metrics,
        "curves": curves,
        "plot": plot,
    }


def plot_curves(curves: dict[str, dict[str, tuple[list, list]]], path: Path) -> Path:
    """One figure, one panel per metric, one line per run; written whole (temporary file renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(curves) or ["(no epochs)"]
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, (x, y) in curves.get(key, {}).items():
            ax.plot(x, y, marker=".", label=label)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path

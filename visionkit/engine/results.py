"""results.csv (one row per epoch) and results.png (one panel per column)."""

from __future__ import annotations

import csv
from pathlib import Path


class ResultsLog:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():  # resuming: keep the epochs already logged
            with open(path) as f:
                self.rows = [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]

    def append(self, row: dict) -> None:
        self.rows = [r for r in self.rows if r.get("epoch") != row.get("epoch")] + [row]
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = self.path.with_suffix(".csv.tmp")
        try:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                for r in self.rows:
                    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
            tmp.replace(self.path)
        except OSError as e:  # a full disk: the previous results.csv stays whole; say which file failed
            tmp.unlink(missing_ok=True)
            e.filename = e.filename or str(self.path)
            raise

    def plot(self, path: Path) -> Path | None:
        if not self.rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in self.rows[0] if k != "epoch" and isinstance(self.rows[0][k], (int, float))]
        cols = min(4, len(keys))
        rows = (len(keys) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
        epochs = [r["epoch"] for r in self.rows]
        for ax, key in zip(axes.flat, keys):
            ax.plot(epochs, [r.get(key) for r in self.rows], marker=".")
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        fig.tight_layout()
        try:
            fig.savefig(path, dpi=90)
        except OSError as e:
            e.filename = e.filename or str(path)  # matplotlib does not say which file failed
            Path(path).unlink(missing_ok=True)  # never a half-written picture
            raise
        finally:
            plt.close(fig)
        return path


def _num(v: str):
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    except (TypeError, ValueError):
        return v

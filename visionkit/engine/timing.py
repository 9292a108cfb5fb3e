"""Where training time goes: seconds per phase (data, copy, step, val, save), printed at the end of a run so a
user sees the bottleneck (``time: data 12% copy 1% step 80% val 6% save 1%``)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

PHASES = ("data", "copy", "step", "val", "save")


class PhaseTimer:
    """Wall seconds per named phase. ``with timer("val"): ...`` or ``start("step")`` / ``stop("step")``."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        self.start(phase)
        try:
            yield
        finally:
            self.stop(phase)

    def start(self, phase: str) -> None:
        self._open[phase] = time.perf_counter()

    def stop(self, phase: str) -> None:
        began = self._open.pop(phase, None)
        if began is not None:
            self.seconds[phase] += time.perf_counter() - began

    def shares(self) -> dict[str, float]:
        """Each phase's fraction of the timed total (phases in PHASES order, then any others)."""
        total = sum(self.seconds.values())
        order = [p for p in PHASES if p in self.seconds] + [p for p in self.seconds if p not in PHASES]
        return {p: self.seconds[p] / total for p in order} if total > 0 else {}

    def summary(self) -> str:
        shares = self.shares()
        if not shares:
            return "nothing timed"
        total = sum(self.seconds.values())
        return " ".join(f"{p} {s:.0%}" for p, s in shares.items()) + f" of {total:.1f}s"

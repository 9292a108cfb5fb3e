"""Training callbacks registered from the Python API: ``model.add_callback("on_epoch_end", fn)``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from visionkit.errors import UsageError

EVENTS = ("on_train_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_val_end", "on_train_end")


class Callbacks:
    def __init__(self):
        self._fns: dict[str, list[Callable]] = defaultdict(list)

    def add(self, event: str, fn: Callable) -> None:
        if event not in EVENTS:
            import difflib

            close = difflib.get_close_matches(event, EVENTS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"unknown callback event '{event}'.{hint} Events: {', '.join(EVENTS)}")
        self._fns[event].append(fn)

    def run(self, event: str, trainer) -> None:
        for fn in self._fns.get(event, []):
            fn(trainer)

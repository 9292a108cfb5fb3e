"""The resolved settings of one run: every key of cfg/default.yaml and the task's own keys, read as attributes."""

from __future__ import annotations

import difflib
from typing import Any


class Settings(dict):
    """Resolved settings, read as attributes: ``args.epochs``, ``args.conf``.

    :func:`visionkit.cfg.resolve` fills every key (shared defaults, the task's keys, ``cfg=FILE``, overrides), so a
    read never needs a default of its own: defaults live in one place, cfg/default.yaml and the task's ``keys``.
    A misspelt name raises with a did-you-mean instead of silently reading ``None``. It is still a dict, so
    ``args["key"]`` and ``{**args}`` work; :meth:`replace` gives a changed copy that stays a ``Settings``.
    """

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            if key.startswith("__"):  # copy, pickle and friends probe for dunders
                raise AttributeError(key) from None
            close = difflib.get_close_matches(key, list(self), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else " (see `visionkit cfg` for every key)"
            raise AttributeError(f"no setting '{key}'{hint}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (the original is left as it is)."""
        return Settings({**self, **changes})

    def plain(self) -> dict[str, Any]:
        """A plain dict, for YAML files and checkpoints (which hold plain data only)."""
        return dict(self)

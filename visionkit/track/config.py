"""Tracker settings: a YAML file shipped with the package (cfg/bytetrack.yaml, cfg/botsort.yaml) or the user's copy,
checked like every other setting: an unknown key gets a did-you-mean, a value its type and range."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from visionkit.cfg import Range
from visionkit.errors import UsageError
from visionkit.yamlfile import read_yaml

CFG_DIR = Path(__file__).with_name("cfg")
UNIT = Range(float, 0, 1)
RULES: dict[str, Range | tuple[str, ...] | type] = {
    "tracker_type": ("bytetrack", "botsort"),
    "track_high_thresh": UNIT,
    "track_low_thresh": UNIT,
    "new_track_thresh": UNIT,
    "match_thresh": UNIT,
    "second_match_thresh": UNIT,
    "unconfirmed_match_thresh": UNIT,
    "track_buffer": Range(int, 1, 100_000),
    "fuse_score": bool,
    "cmc_method": ("sparse_flow", "orb", "none"),
    "cmc_downscale": Range(int, 0, 16),
}


def builtin_trackers() -> list[str]:
    return sorted(p.stem for p in CFG_DIR.glob("*.yaml"))


def _read(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "tracker settings", UsageError) or {}
    if not isinstance(data, dict):
        raise UsageError(f"tracker settings '{path}' must hold a mapping of key: value (copy {CFG_DIR}/bytetrack.yaml)")
    return data


def load_tracker_settings(spec: str | Path | dict) -> dict[str, Any]:
    """``bytetrack``, ``botsort``, a YAML path or a dict → checked settings with ``tracker_type``. Keys a user's
    file leaves out take the shipped file's value for that tracker type."""
    if isinstance(spec, dict):
        values, where = dict(spec), "tracker settings"
    elif str(spec) in builtin_trackers():
        values, where = _read(CFG_DIR / f"{spec}.yaml"), str(CFG_DIR / f"{spec}.yaml")
    elif str(spec).endswith((".yaml", ".yml")):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"tracker settings '{path}' do not exist; copy {CFG_DIR}/bytetrack.yaml and edit it")
        values, where = _read(path), str(path)
    else:
        close = difflib.get_close_matches(str(spec), builtin_trackers(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"bad value tracker={spec!r}:{hint} use {' or '.join(builtin_trackers())}, or a YAML file of tracker "
            f"settings (copy {CFG_DIR}/bytetrack.yaml)"
        )
    kind = values.get("tracker_type")
    if kind not in RULES["tracker_type"]:
        raise UsageError(f"{where}: tracker_type must be one of {', '.join(RULES['tracker_type'])}, got {kind!r}")
    defaults = _read(CFG_DIR / f"{kind}.yaml")
    for key, value in values.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else f" {kind} takes: {', '.join(defaults)}"
            raise UsageError(f"unknown key '{key}' in {where}.{hint}")
        _check(key, value, where)
    merged = {**defaults, **values}
    if merged["track_low_thresh"] > merged["track_high_thresh"]:
        raise UsageError(
            f"{where}: track_low_thresh ({merged['track_low_thresh']}) must not exceed track_high_thresh "
            f"({merged['track_high_thresh']})"
        )
    for key, value in merged.items():
        if isinstance(RULES.get(key), Range) and RULES[key].type is float:
            merged[key] = float(value)
    return merged


def _check(key: str, value: Any, where: str) -> None:
    rule = RULES[key]
    bad = f"bad value {key}: {value!r} in {where}: "
    if isinstance(rule, Range) and not rule.admits(value):
        raise UsageError(bad + f"expected {rule}")
    if isinstance(rule, tuple) and value not in rule:
        close = difflib.get_close_matches(str(value), rule, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(bad + f"choose one of {', '.join(rule)}.{hint}")
    if rule is bool and not isinstance(value, bool):
        raise UsageError(bad + "expected true or false")


def build_tracker(spec: str | Path | dict, frame_rate: float = 30.0):
    """A fresh tracker from settings (see :func:`load_tracker_settings`), through the registry (kind "tracker")."""
    from visionkit.registry import REGISTRY

    settings = load_tracker_settings(spec)
    kind = settings.pop("tracker_type")
    return REGISTRY.build("tracker", kind, frame_rate=frame_rate, **settings)

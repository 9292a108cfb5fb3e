"""Configuration: the defaults file, typed ``key=value`` parsing and merging (CLI > cfg=FILE > defaults)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import UsageError
from visionkit.limits import MAX_IMGSZ
from visionkit.yamlfile import read_yaml

DEFAULT_CFG_PATH = Path(__file__).with_name("default.yaml")

# keys whose value must be one of a fixed set
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("auto", "sgd", "adamw", "adam"),
    "scheduler": ("cosine", "linear", "onecycle", "constant"),
    "split": ("train", "val", "test"),
}
# keys that accept a bool or a string (resume=True or resume=path/last.pt)
BOOL_OR_STR = {"resume", "cache"}
# keys that accept a bool or one of a fixed set of strings (amp=true picks the dtype, amp=fp16 forces it)
BOOL_OR_CHOICE: dict[str, tuple[str, ...]] = {"amp": ("bf16", "fp16")}
# integer keys with a range (null still means "decided by the model or data")
INT_RANGES: dict[str, tuple[int, int]] = {"imgsz": (1, MAX_IMGSZ), "nproc": (1, 1024)}


def load_defaults() -> dict[str, Any]:
    with open(DEFAULT_CFG_PATH) as f:
        return yaml.safe_load(f)


def parse_value(text: str) -> Any:
    """Type a command-line value: int, float, bool, None, lists; anything else stays a string."""
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for number in (int, float):  # before YAML, which reads 1e-3 as a string
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, list, dict)) else text


def parse_kv(args: list[str]) -> dict[str, Any]:
    """``["epochs=3", "cache"]`` → ``{"epochs": 3, "cache": True}`` (a bare key means True)."""
    out: dict[str, Any] = {}
    for arg in args:
        if "=" in arg:
            key, _, text = arg.partition("=")
            if not key:
                raise UsageError(f"'{arg}' has no key; write key=value")
            out[key.strip()] = parse_value(text.strip())
        else:
            out[arg.strip()] = True
    return out


def check_overrides(overrides: dict[str, Any], defaults: dict[str, Any], source: str = "argument") -> dict[str, Any]:
    """Check every key exists and every value fits the default's type; returns typed values."""
    out = {}
    for key, value in overrides.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else " See `visionkit cfg` for every key."
            raise UsageError(f"unknown {source} '{key}'.{hint}")
        out[key] = _coerce(key, value, defaults[key])
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    bad = f"bad value {key}={value!r}: "
    if key == "imgsz" and isinstance(value, (str, list, tuple)):
        return _size_pair(value, bad)
    if value is not None and key in INT_RANGES:
        low, high = INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UsageError(bad + f"expected an integer in {low}..{high}")
        return value
    if value is None or default is None:
        return value
    if key in BOOL_OR_CHOICE:
        if isinstance(value, bool) or value in BOOL_OR_CHOICE[key]:
            return value
        raise UsageError(bad + f"expected true, false or one of {', '.join(BOOL_OR_CHOICE[key])}")
    if key in BOOL_OR_STR:
        if isinstance(value, (bool, str)):
            return value
        raise UsageError(bad + "expected true, false or a path")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise UsageError(bad + "expected true or false")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(bad + "expected an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(bad + "expected a number")
        return float(value)
    if isinstance(default, str):
        value = str(value) if not isinstance(value, (list, dict)) else value
        if key in CHOICES and value not in CHOICES[key]:
            close = difflib.get_close_matches(str(value), CHOICES[key], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(bad + f"choose one of {', '.join(CHOICES[key])}.{hint}")
        return value
    return value


def _size_pair(value, bad: str) -> list[int]:
    """``imgsz=240,320`` (or [240, 320]): height, width, each in range. Only exports to a fixed input take a pair
    (Model checks where it is used)."""
    parts = value.replace("x", ",").split(",") if isinstance(value, str) else list(value)
    low, high = INT_RANGES["imgsz"]
    try:
        pair = [int(str(p).strip()) for p in parts]
    except ValueError:
        pair = []
    if len(pair) != 2 or not all(low <= v <= high for v in pair):
        raise UsageError(bad + f"expected an integer in {low}..{high}, or height,width such as 240,320")
    return pair


def load_cfg_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"cfg file '{path}' does not exist")
    data = read_yaml(path, "cfg file", UsageError) or {}
    if not isinstance(data, dict):
        raise UsageError(f"cfg file '{path}' must hold a mapping of key: value")
    return data


def task_defaults(task_keys: dict[str, tuple[Any, str]] | None) -> dict[str, Any]:
    """The shared defaults plus a task's own keys (a task may also change a shared key's default)."""
    return {**load_defaults(), **{k: default for k, (default, _) in (task_keys or {}).items()}}


def check_shared(overrides: dict[str, Any]) -> None:
    """Check the values of the shared keys in ``overrides`` (the rest may be a task's own keys, checked once the
    task is known): lets the CLI refuse a bad value before it imports torch."""
    defaults = load_defaults()
    check_overrides({k: v for k, v in overrides.items() if k in defaults}, defaults)


def resolve(overrides: dict[str, Any] | None = None,
            task_keys: dict[str, tuple[Any, str]] | None = None) -> dict[str, Any]:
    """Defaults (shared and ``task_keys``), then ``cfg=FILE`` values, then ``overrides``; every key and value
    checked, an unknown key with a did-you-mean."""
    defaults = task_defaults(task_keys)
    overrides = dict(overrides or {})
    merged = dict(defaults)
    cfg_file = overrides.get("cfg")
    if cfg_file:
        file_values = load_cfg_file(cfg_file)
        file_values.pop("cfg", None)
        merged.update(check_overrides(file_values, defaults, source=f"key in {cfg_file}"))
    merged.update(check_overrides(overrides, defaults))
    return merged

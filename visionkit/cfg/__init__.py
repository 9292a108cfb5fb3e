"""Configuration: the defaults file, typed ``key=value`` parsing and merging (CLI > cfg=FILE > defaults)."""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionkit.cfg.settings import Settings
from visionkit.errors import UsageError
from visionkit.limits import MAX_IMGSZ
from visionkit.yamlfile import read_yaml

__all__ = [
    "Range",
    "Numbers",
    "Settings",
    "RANGES",
    "CHOICES",
    "resolve",
    "check_shared",
    "parse_kv",
    "task_defaults",
    "task_rules",
    "load_defaults",
]

DEFAULT_CFG_PATH = Path(__file__).with_name("default.yaml")

# keys whose value must be one of a fixed set
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("auto", "sgd", "adamw", "adam"),
    "scheduler": ("cosine", "linear", "onecycle", "constant"),
    "split": ("train", "val", "test"),
    "act": ("silu", "relu", "relu6", "hardswish"),  # visionkit.models.layers.ACTIVATIONS (kept torch-free here)
}
# keys that accept a bool or a string (resume=True or resume=path/last.pt)
BOOL_OR_STR = {"resume", "cache"}
# keys that accept a bool or one of a fixed set of strings (amp=true picks the dtype, amp=fp16 forces it)
BOOL_OR_CHOICE: dict[str, tuple[str, ...]] = {"amp": ("bf16", "fp16")}


@dataclass(frozen=True)
class Range:
    """A numeric key's type and allowed interval; ``open_low`` / ``open_high`` leave an end out."""

    type: type
    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def admits(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        kind = "an integer" if self.type is int else "a number"
        return f"{kind} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


@dataclass(frozen=True)
class Numbers:
    """A key that takes a list of numbers (one number is a list of one), each within ``each``."""

    each: Range

    def coerce(self, value) -> list[float] | None:
        """The list of numbers, or None when ``value`` is not one."""
        items = value if isinstance(value, list) else [value]
        if not items or not all(self.each.admits(v) for v in items):
            return None
        return [float(v) if self.each.type is float else v for v in items]

    def __str__(self) -> str:
        return f"a number or a list of numbers, each {self.each}"


INF = math.inf
# every numeric key: its type and range, declared once (null still means "decided by the model or data"); a value
# of the wrong type, outside the range, NaN or infinite is refused with the range in the message
RANGES: dict[str, Range | Numbers] = {
    "min_loaded": Range(float, 0, 1),
    "lr_backbone": Range(float, 0, 100),
    "mean": Numbers(Range(float, -1e3, 1e3)),
    "std": Numbers(Range(float, 0, 1e3, open_low=True)),
    "imgsz": Range(int, 1, MAX_IMGSZ),
    "nproc": Range(int, 1, 1024),
    "epochs": Range(int, 1, 1_000_000),
    "batch": Range(int, 1, 1 << 16),
    "workers": Range(int, 0, 1024),
    "threads": Range(int, 0, 1024),
    "seed": Range(int, 0, 2**32 - 1),
    "lr0": Range(float, 0, 10, open_low=True),
    "lrf": Range(float, 0, 1),
    "momentum": Range(float, 0, 1, open_high=True),
    "weight_decay": Range(float, 0, 1),
    "warmup_epochs": Range(float, 0, INF, open_high=True),
    "pct_start": Range(float, 0, 1, open_low=True, open_high=True),
    "clip_grad": Range(float, 0, INF, open_high=True),
    "ema_decay": Range(float, 0, 1, open_low=True, open_high=True),
    "patience": Range(int, 0, 1_000_000),
    "save_period": Range(int, 0, 1_000_000),
    "fliplr": Range(float, 0, 1),
    "flipud": Range(float, 0, 1),
    "degrees": Range(float, 0, 180),
    "crop_scale": Range(float, 0, 1, open_low=True),
    "color_jitter": Range(float, 0, 1),
    "cutout": Range(float, 0, 1),
    "coarse_dropout": Range(float, 0, 1),
    "dropout_holes": Range(int, 1, 1024),
    "dropout_size": Range(float, 0, 1, open_low=True),
    "mosaic": Range(float, 0, 1),
    "close_mosaic": Range(int, 0, 1_000_000),
    "mixup": Range(float, 0, 1),
    "scale": Range(float, 0, 1, open_high=True),
    "translate": Range(float, 0, 1),
    "shear": Range(float, 0, 90, open_high=True),
    "hsv_h": Range(float, 0, 1),
    "hsv_s": Range(float, 0, 1),
    "hsv_v": Range(float, 0, 1),
    "iou": Range(float, 0, 1),
    "max_det": Range(int, 1, 100_000),
    "topk": Range(int, 1, 100_000),
    "start_lr": Range(float, 0, 10, open_low=True),
    "end_lr": Range(float, 0, 1000, open_low=True),
    "num_iter": Range(int, 2, 1_000_000),
    "opset": Range(int, 7, 30),
    "export_tol": Range(float, 0, INF, open_low=True, open_high=True),
    "fraction": Range(float, 0, 1, open_low=True),
}


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


def check_overrides(
    overrides: dict[str, Any],
    defaults: dict[str, Any],
    source: str = "argument",
    rules: dict[str, Range | tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Check every key exists and every value fits the default's type and the key's range or choices (``rules``:
    a task's own, on top of :data:`RANGES` and :data:`CHOICES`); returns typed values."""
    out = {}
    for key, value in overrides.items():
        if key not in defaults:
            owners = tasks_declaring(key)
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
            if owners:
                listed = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
                which = f"the {listed} task" + ("s" if len(owners) > 1 else "")
                hint = f" It is a setting of {which}, not of this one."
            elif close:
                hint = f" Did you mean '{close[0]}'?"
            else:
                hint = " See `visionkit cfg` for every key."
            raise UsageError(f"unknown {source} '{key}'.{hint}")
        out[key] = _coerce(key, value, defaults[key], (rules or {}).get(key))
    return out


# keys that name files or folders (run settings and the data/serve commands'): checked against the file system's
# name limits when resolved, so a name too long is a usage error, not an OSError deep inside
PATH_KEYS = {
    "model",
    "data",
    "root",
    "datasets_dir",
    "weights",
    "cfg",
    "project",
    "name",
    "source",
    "label_config",
    "ls_root",
    "src",
    "images",
    "out",
    "config",
    "tracker",
    "gt",
}
NAME_MAX, PATH_MAX = 255, 4096  # bytes: Linux's limits for one name and a whole path


def _check_path(key: str, value: str) -> None:
    longest = max((len(part.encode()) for part in value.split("/")), default=0)
    if longest > NAME_MAX or len(value.encode()) > PATH_MAX:
        raise UsageError(
            f"bad value {key}={value[:60]!r}...: a file name of {longest} bytes or a path of {len(value.encode())} "
            f"bytes is longer than file systems allow ({NAME_MAX} per name, {PATH_MAX} in all); use a shorter one"
        )


def _coerce(key: str, value: Any, default: Any, rule: Range | Numbers | tuple[str, ...] | None = None) -> Any:
    if key in PATH_KEYS and isinstance(value, str):
        _check_path(key, value)
    bad = f"bad value {key}={value!r}: "
    if key == "imgsz" and isinstance(value, (str, list, tuple)):
        return _size_pair(value, bad)
    rule = rule if rule is not None else RANGES.get(key, CHOICES.get(key))
    if value is not None and isinstance(rule, Range):
        if not rule.admits(value):
            raise UsageError(bad + f"expected {rule}")
        return float(value) if rule.type is float else value
    if value is not None and isinstance(rule, Numbers):
        numbers = rule.coerce(value)
        if numbers is None:
            raise UsageError(bad + f"expected {rule}")
        return numbers
    if key == "freeze" and value is not None:
        if value == "backbone" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000):
            return value
        raise UsageError(bad + "expected freeze=backbone or freeze=N, the number of first backbone stages to freeze")
    if key == "sha256" and value is not None:
        text = str(value).lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise UsageError(bad + "expected the file's SHA-256 as 64 hexadecimal digits (sha256sum FILE prints it)")
        return text
    if key == "classes" and value is not None:
        ids = value if isinstance(value, list) else [value]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in ids):
            raise UsageError(bad + "expected a class id or a list of them, e.g. classes=0 or classes=[0,2]")
        return ids
    if value is None and default is not None:  # null means "decided by the model or data" only where that is so
        raise UsageError(
            bad + f"{key} has no 'decided elsewhere' value; give a value like the default, {key}={json.dumps(default)}"
        )
    if value is None:
        return value
    if isinstance(default, str) or (default is None and isinstance(rule, tuple)):  # act=relu: null until chosen
        value = str(value) if not isinstance(value, (list, dict)) else value
        if isinstance(rule, tuple) and value not in rule:
            close = difflib.get_close_matches(str(value), rule, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(bad + f"choose one of {', '.join(rule)}.{hint}")
        return value
    if default is None:
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
    return value


def _size_pair(value, bad: str) -> list[int]:
    """``imgsz=240,320`` (or [240, 320]): height, width, each in range. Only exports to a fixed input take a pair
    (Model checks where it is used)."""
    parts = value.replace("x", ",").split(",") if isinstance(value, str) else list(value)
    rule = RANGES["imgsz"]
    try:
        pair = [int(str(p).strip()) for p in parts]
    except ValueError:
        pair = []
    if len(pair) != 2 or not all(rule.admits(v) for v in pair):
        raise UsageError(bad + f"expected {rule}, or height,width such as 240,320")
    return pair


def load_cfg_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"cfg file '{path}' does not exist")
    data = read_yaml(path, "cfg file", UsageError) or {}
    if not isinstance(data, dict):
        raise UsageError(f"cfg file '{path}' must hold a mapping of key: value")
    return data


TaskKeys = dict[str, tuple]  # key → (default, comment) or (default, comment, Range | Numbers | choices)


def task_defaults(task_keys: TaskKeys | None) -> dict[str, Any]:
    """The shared defaults plus a task's own keys (a task may also change a shared key's default)."""
    return {**load_defaults(), **{k: spec[0] for k, spec in (task_keys or {}).items()}}


def task_rules(task_keys: TaskKeys | None) -> dict[str, Range | Numbers | tuple[str, ...]]:
    """The ranges and choice lists a task declares for its keys (the optional third item of each)."""
    return {k: spec[2] for k, spec in (task_keys or {}).items() if len(spec) > 2}


def check_shared(overrides: dict[str, Any]) -> None:
    """Check the values of the shared keys in ``overrides`` (the rest may be a task's own keys, checked once the
    task is known): lets the CLI refuse a bad value before it imports torch."""
    defaults = load_defaults()
    check_overrides({k: v for k, v in overrides.items() if k in defaults}, defaults)


def tasks_declaring(key: str) -> list[str]:
    """The registered tasks whose own keys include ``key`` (for the error on a key another task owns)."""
    from visionkit.registry import REGISTRY

    try:
        return [n for n in REGISTRY.available("task") if key in (REGISTRY.get("task", n).keys or {})]
    except Exception:  # the registry cannot load (a broken plugin): the plain error is still right
        return []


def resolve(overrides: dict[str, Any] | None = None, task_keys: TaskKeys | None = None) -> Settings:
    """Defaults (shared and ``task_keys``), then ``cfg=FILE`` values, then ``overrides``; every key and value
    checked, an unknown key with a did-you-mean. Returns every key, read as attributes (:class:`Settings`)."""
    defaults = task_defaults(task_keys)
    rules = task_rules(task_keys)
    overrides = dict(overrides or {})
    merged = Settings(defaults)
    cfg_file = overrides.get("cfg")
    if cfg_file:
        file_values = load_cfg_file(cfg_file)
        file_values.pop("cfg", None)
        merged.update(check_overrides(file_values, defaults, source=f"key in {cfg_file}", rules=rules))
    merged.update(check_overrides(overrides, defaults, rules=rules))
    return merged

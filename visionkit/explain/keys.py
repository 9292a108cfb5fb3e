"""explain's own settings (method, layer, target, LIME's lime_*) and the gallery's count, checked without importing
torch so that a typo fails at once, before a checkpoint is loaded."""

from __future__ import annotations

import difflib
from typing import Any

from visionkit.cfg import Range, check_overrides
from visionkit.errors import UsageError

# CAM method name → the pytorch-grad-cam class that computes it
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
LIME = "lime"  # model-agnostic: perturbs superpixels of the input (visionkit.explain.lime), no layer, no grad-cam
# every method: name → what computes it
METHODS: dict[str, str] = {**CAM_METHODS, LIME: "visionkit.explain.lime"}
# methods whose map does not depend on the target (one map per image, whatever is explained)
TARGET_FREE = frozenset({"eigencam"})

# keys of `explain` beyond the shared settings: key → (default, comment)
EXPLAIN_KEYS: dict[str, tuple[Any, str]] = {
    "method": ("gradcam", f"explain: {', '.join(METHODS)}"),
    "layer": (None, "explain: module path of the feature map (e.g. backbone.stages.2); null = the task's last one"),
    "target": (
        None,
        "explain: classify/segment a class name or id; detect a box index or a class name; depth x1,y1,x2,y2",
    ),
}
# LIME's keys: key → (default, comment, range or choices); they apply to method=lime only
LIME_KEYS: dict[str, tuple[Any, str, Any]] = {
    "lime_samples": (500, "explain lime: perturbed copies scored (a forward pass each)", Range(int, 10, 100_000)),
    "lime_segments": (50, "explain lime: superpixels to cut the image into (about)", Range(int, 2, 2000)),
    "lime_top": (5, "explain lime: superpixels shown, the k of largest positive weight", Range(int, 1, 2000)),
    "lime_fill": ("mean", "explain lime: a switched-off superpixel shows the mean colour or a blur", ("mean", "blur")),
}
EXPLAIN_KEYS.update({k: spec[:2] for k, spec in LIME_KEYS.items()})

GALLERY_DEFAULT = 16  # gallery=True shows this many mistakes


def check_method(method: Any) -> str:
    """``method`` if it names a method; otherwise an error listing them, with a did-you-mean."""
    if isinstance(method, str) and method in METHODS:
        return method
    close = difflib.get_close_matches(str(method), METHODS, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"bad value method={method!r}: choose one of {', '.join(METHODS)}.{hint}")


def split_explain_keys(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(explain's own keys with their defaults, checked where they can be without a model; the other settings).
    LIME's keys are among the first only for method=lime, so that the result can be split again."""
    opts = {k: overrides.get(k, default) for k, (default, _) in EXPLAIN_KEYS.items() if k not in LIME_KEYS}
    check_method(opts["method"])
    if opts["layer"] is not None and not isinstance(opts["layer"], str):
        raise UsageError(f"bad value layer={opts['layer']!r}: give a module path such as backbone.stages.2")
    given = {k: overrides[k] for k in LIME_KEYS if k in overrides}
    if opts["method"] == LIME:
        if opts["layer"] is not None:
            raise UsageError(
                f"layer={opts['layer']!r} does not apply to method=lime: LIME perturbs the input image, not a layer "
                f"(drop layer=, or use a CAM method: {', '.join(CAM_METHODS)})"
            )
        defaults = {k: spec[0] for k, spec in LIME_KEYS.items()}
        rules = {k: spec[2] for k, spec in LIME_KEYS.items()}
        opts.update({**defaults, **check_overrides(given, defaults, "explain key", rules)})
    elif given:
        raise UsageError(f"{', '.join(f'{k}=' for k in given)} apply to method=lime only (method={opts['method']})")
    return opts, {k: v for k, v in overrides.items() if k not in EXPLAIN_KEYS}


def split_gallery_keys(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the gallery's explain keys: method= (default gradcam), layer= for a CAM, LIME's keys; the val settings).
    target= is refused: each tile explains the class the model predicted."""
    opts, rest = split_explain_keys(overrides)
    if opts.pop("target") is not None:
        raise UsageError(
            f"target={overrides['target']!r} does not apply to gallery=: each tile explains the class the model "
            f"predicted for that image"
        )
    return opts, rest


def gallery_count(value: Any) -> int | None:
    """``gallery=`` → how many mistakes to show: True → 16, a positive number → that many, False/None → no gallery."""
    if value is None or value is False:
        return None
    if value is True:
        return GALLERY_DEFAULT
    if isinstance(value, int) and value >= 1:
        return value
    raise UsageError(
        f"bad value gallery={value!r}: true ({GALLERY_DEFAULT} mistakes) or how many mistakes to show, e.g. gallery=8"
    )

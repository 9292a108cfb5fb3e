"""CAM plumbing on top of pytorch-grad-cam: methods by name, layers by module path, one map per target."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from visionkit.errors import UsageError
from visionkit.explain.keys import CAM_METHODS, check_method

SCORECAM_BATCH = 32  # masked copies of the image per forward pass (the library default is 16; CPUs gain from more)


def grad_cam_library():
    """The pytorch_grad_cam module, imported on first use: it is an optional extra."""
    try:
        import pytorch_grad_cam
    except ImportError as e:
        raise UsageError(f"explain needs the grad-cam library: pip install 'visionkit[explain]' ({e})") from e
    return pytorch_grad_cam


def cam_class(method: str):
    """The pytorch-grad-cam class of ``method``; a clear error for an unknown name or a missing library."""
    return getattr(grad_cam_library(), CAM_METHODS[check_method(method)])


def spatial_layers(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(module path, output shape) of every module whose output is a (B, C, H, W) map with H·W > 1, in the order
    their forward passes finish (so the last one before the head comes last among the non-head ones)."""
    found: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, module in net.named_modules():
        if not name:
            continue

        def hook(_m, _inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1:
                found.append((name, tuple(out.shape)))

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    seen: set[str] = set()  # a module called twice (a shared block) is listed once, where it first finished
    return [(n, s) for n, s in found if not (n in seen or seen.add(n))]


def find_layer(net: nn.Module, path: str, spatial: list[tuple[str, tuple[int, ...]]]) -> nn.Module:
    """The module at ``path`` (e.g. backbone.stages.2); a wrong path lists the spatial ones with their shapes."""
    modules = dict(net.named_modules())
    names = [n for n, _ in spatial]
    if path not in modules or path not in names:
        close = difflib.get_close_matches(str(path), names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = spatial[-12:]
        listed = ", ".join(f"{n} {list(s[1:])}" for n, s in shown)
        what = "is not a module of this model" if path not in modules else "does not output a spatial map"
        raise UsageError(
            f"bad value layer={path!r}: it {what}.{hint} Spatial layers (last {len(shown)} of {len(spatial)}, "
            f"name [C, H, W]): {listed}"
        )
    return modules[path]


@contextmanager
def _quiet_scorecam():
    """Score-CAM draws its own tqdm bar per image, whatever verbose says; explain has its own bar."""
    from pytorch_grad_cam import score_cam
    from tqdm import tqdm

    original = score_cam.tqdm
    score_cam.tqdm = SimpleNamespace(tqdm=partial(tqdm, disable=True))
    try:
        yield
    finally:
        score_cam.tqdm = original


def compute_cam(
    method: str, wrapped: nn.Module, layer: nn.Module, x: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """One map (H, W) float32 in 0..1 at the input size, for one image ``x`` (1, C, H, W) and one target:
    ``score`` maps the wrapped network's output for that image to the scalar the CAM explains."""
    cls = cam_class(method)
    with cls(model=wrapped, target_layers=[layer]) as cam:
        if method == "scorecam":
            cam.batch_size = SCORECAM_BATCH
            with _quiet_scorecam():
                maps = cam(input_tensor=x, targets=[score])
        else:
            maps = cam(input_tensor=x, targets=[score])
    # a constant map (no gradient reached the layer) comes back as 0/0 from the library's min-max scaling
    return np.nan_to_num(np.asarray(maps[0], dtype=np.float32)).clip(0, 1)

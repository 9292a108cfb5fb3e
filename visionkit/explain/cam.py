"""CAM plumbing on top of pytorch-grad-cam: methods by name, layers by module path, maps back to the original image
and overlays."""

from __future__ import annotations

import difflib

import cv2
import numpy as np
import torch
from torch import nn

from visionkit.errors import UsageError

# method name → pytorch_grad_cam class name
METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}


def cam_class(method: str):
    """The pytorch-grad-cam class of ``method``; a clear error for an unknown name or a missing library."""
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"bad value method={method!r}: choose one of {', '.join(METHODS)}.{hint}")
    try:
        import pytorch_grad_cam
    except ImportError as e:
        raise UsageError(f"explain needs the grad-cam library: pip install 'visionkit[explain]' ({e})") from e
    return getattr(pytorch_grad_cam, METHODS[method])


def spatial_layers(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Modules whose output is a (B, C, H, W) map with H·W > 1, in the order their forward passes finish."""
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
    seen: set[str] = set()
    return [(n, s) for n, s in found if not (n in seen or seen.add(n))]


def find_layer(net: nn.Module, path: str, spatial: list[tuple[str, tuple[int, ...]]]) -> nn.Module:
    """The module at ``path`` (e.g. backbone.stages.2); a wrong path lists the spatial ones."""
    modules = dict(net.named_modules())
    names = [n for n, _ in spatial]
    if path not in modules or path not in names:
        close = difflib.get_close_matches(str(path), names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        listed = ", ".join(f"{n} {list(s[1:])}" for n, s in spatial[-12:])
        what = "is not a module of this model" if path not in modules else "does not output a spatial map"
        raise UsageError(
            f"bad value layer={path!r}: it {what}.{hint} Spatial layers (last {min(12, len(spatial))} of "
            f"{len(spatial)}, name [C, H, W]): {listed}"
        )
    return modules[path]


def to_original(cam: np.ndarray, context, shape: tuple[int, int]) -> np.ndarray:
    """A map at the network input (letterboxed: ``context`` has scale and pad; resized: None) → (h0, w0)."""
    h0, w0 = shape
    if context is not None and "pad" in context:
        (sx, sy), (left, top) = context["scale"], context["pad"]
        h, w = cam.shape
        y2, x2 = min(h, int(round(top + h0 * sy))), min(w, int(round(left + w0 * sx)))
        cam = cam[int(top) : max(y2, int(top) + 1), int(left) : max(x2, int(left) + 1)]
    return cv2.resize(cam.astype(np.float32), (w0, h0), interpolation=cv2.INTER_LINEAR).clip(0, 1)


def overlay(image_bgr: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map (JET: red is where the target's evidence is) blended over the image."""
    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)
    if image_bgr.ndim == 2 or image_bgr.shape[2] == 1:
        image_bgr = cv2.cvtColor(image_bgr.reshape(image_bgr.shape[:2]), cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(image_bgr, 1 - alpha, heat, alpha, 0)


def compute_cam(method: str, wrapped: nn.Module, layer: nn.Module, x: torch.Tensor, score) -> np.ndarray:
    """One map (H, W) in 0..1 at the input size for one image ``x`` (1, C, H, W) and one target ``score``."""
    cls = cam_class(method)
    kwargs = {"model": wrapped, "target_layers": [layer]}
    with cls(**kwargs) as cam:
        if method == "scorecam":
            cam.batch_size = 32
        maps = cam(input_tensor=x, targets=[score])
    out = np.nan_to_num(np.asarray(maps[0], dtype=np.float32))
    return out.clip(0, 1)

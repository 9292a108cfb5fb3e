"""Parameters, FLOPs and a per-layer table with output shapes and receptive fields.

Receptive field arithmetic (the course's): for a layer with kernel k, stride s, padding p, dilation d and
k' = d·(k − 1) + 1, from the input's (RF r, jump j, start):
    r_out = r + (k' − 1)·j,   j_out = j·s,   start_out = start + ((k' − 1)/2 − p)·j.
The image has r = 1, j = 1, start = 0.5 (centre of the first pixel). Every tensor carries its own (r, j, start)
through the forward pass, functional operations included: a residual add or a concat takes the largest RF of
its inputs (the union of the windows), an upsampling by f divides the jump by f, a squeeze-excitation gate
rescales but does not widen, and global pooling, linear layers on pooled features and attention see the whole
image ("global").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

IMAGE_RF = (1.0, 1.0, 0.5)
GLOBAL = float("inf")
_GLOBAL_OPS = {
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "_adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "scaled_dot_product_attention",
    "multi_head_attention_forward",
}
_REDUCTIONS = {"mean", "amax", "amin", "sum"}  # global only when they reduce the spatial dimensions


@dataclass
class LayerRow:
    name: str
    kind: str
    shape: tuple
    params: int
    rf: float
    jump: float
    start: float


def _pair(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def window_step(rf: float, jump: float, start: float, k: int, s: int, p, d: int = 1) -> tuple[float, float, float]:
    """(r, j, start) after a k×k window with stride s, padding p ('same', 'valid' or a number) and dilation d."""
    keff = d * (k - 1) + 1
    p = (keff - 1) // 2 if p == "same" else 0 if p == "valid" else _pair(p)
    return rf + (keff - 1) * jump, jump * s, start + ((keff - 1) / 2 - p) * jump


class _RFTracker(TorchFunctionMode):
    """Gives every tensor an operation outputs the (r, j, start) that follows from its inputs'."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        inputs = [t for t in _tensors(args) + _tensors(list(kwargs.values())) if hasattr(t, "_vk_rf")]
        outputs = _tensors([out])
        if inputs and outputs:
            rf = _op_rf(name, args, kwargs, inputs, out)
            for t in outputs:
                _tag(t, rf)
        return out


def _tensors(items) -> list[torch.Tensor]:
    found = []
    for item in items:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            found += _tensors(item)
    return found


def _tag(t: torch.Tensor, rf) -> None:
    try:
        t._vk_rf = rf
    except (AttributeError, RuntimeError):
        pass


def _op_rf(name: str, args, kwargs, inputs, out):
    x = inputs[0]
    rf, jump, start = x._vk_rf
    arg = lambda i, key, default: kwargs.get(key, args[i] if len(args) > i else default)  # noqa: E731
    if name == "conv2d" and isinstance(arg(1, "weight", None), torch.Tensor):
        k = arg(1, "weight", None).shape[-1]
        return window_step(
            rf, jump, start, k, _pair(arg(3, "stride", 1)), arg(4, "padding", 0), _pair(arg(5, "dilation", 1))
        )
    if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
        k = _pair(arg(1, "kernel_size", 1))
        s = arg(2, "stride", None)
        s = k if s is None or s == [] or s == () else _pair(s)
        d = _pair(arg(4, "dilation", 1)) if "max" in name else 1
        return window_step(rf, jump, start, k, s, arg(3, "padding", 0), d)
    if name == "conv_transpose2d" and isinstance(arg(1, "weight", None), torch.Tensor):
        k, s = arg(1, "weight", None).shape[-1], _pair(arg(3, "stride", 1))
        return rf + (k - 1) * jump / s, jump / s, start
    if name in _GLOBAL_OPS or (name == "linear" and x.dim() == 2):
        return GLOBAL, jump, start
    if (
        name in _REDUCTIONS
        and x.dim() == 4
        and isinstance(out, torch.Tensor)
        and (out.dim() < 4 or out.shape[-2:].numel() < x.shape[-2:].numel())
    ):
        return GLOBAL, jump, start
    resized = isinstance(out, torch.Tensor) and out.dim() == 4 and x.dim() == 4
    if resized and name in ("interpolate", "upsample", "upsample_nearest2d", "upsample_bilinear2d"):
        f = out.shape[-1] / x.shape[-1]
        return rf, jump / f, start - (jump - jump / f) / 2
    # add, cat, activations, norms, reshapes: the union of the inputs' windows. A per-channel gate (B, C, 1, 1)
    # multiplying a feature map (squeeze-excitation) is left out: it rescales the window, it does not widen it
    spatial = [t for t in inputs if t.dim() == 4 and t.shape[-2] * t.shape[-1] > 1]
    widest = max(spatial or inputs, key=lambda t: t._vk_rf[0])
    return widest._vk_rf


def layer_table(net: nn.Module, x: torch.Tensor) -> list[LayerRow]:
    """Run ``x`` through ``net`` and record every leaf module (and attention blocks) in execution order, with the
    receptive field of its output."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) and output else output  # a list: its first
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
            rf = getattr(out, "_vk_rf", None) or (float("nan"),) * 3  # not derived from the image
            rows.append(
                LayerRow(
                    name, type(module).__name__, shape, sum(p.numel() for p in module.parameters(recurse=True)), *rf
                )
            )

        return fn

    attention = [n + "." for n, m in net.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for name, m in net.named_modules():
        leaf = not any(True for _ in m.children())
        if (leaf or isinstance(m, nn.MultiheadAttention)) and not name.startswith(tuple(attention)):
            hooks.append(m.register_forward_hook(hook(name)))
    x = x.clone()
    _tag(x, IMAGE_RF)
    try:
        with torch.no_grad(), _RFTracker():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return rows


def count_flops(net: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts as 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return int(counter.get_total_flops())


def model_info(net: nn.Module, imgsz: int, in_channels: int) -> dict:
    was = net.training
    net.eval()
    x = torch.zeros(1, in_channels, imgsz, imgsz)
    try:
        rows = layer_table(net, x)
        flops = count_flops(net, x)
    finally:
        net.train(was)
    params = sum(p.numel() for p in net.parameters())
    finite = [r.rf for r in rows if math.isfinite(r.rf)]
    return {"params": params, "flops": flops, "imgsz": imgsz, "layers": rows, "max_rf": max(finite) if finite else 1.0}


def format_info(info: dict, name: str = "model") -> str:
    lines = [f"{'layer':<42} {'type':<20} {'output':<20} {'params':>9} {'RF':>6} {'jump':>5} {'start':>6}"]
    for r in info["layers"]:
        rf, jump, start = (
            "global" if v == GLOBAL else "-" if math.isnan(v) else f"{v:g}" for v in (r.rf, r.jump, r.start)
        )
        lines.append(
            f"{r.name[:42]:<42} {r.kind[:20]:<20} {str(list(r.shape))[:20]:<20} {r.params:>9,} "
            f"{rf:>6} {jump:>5} {start:>6}"
        )
    lines.append(
        f"{name}: {info['params']:,} parameters, {info['flops'] / 1e9:.4f} GFLOPs at "
        f"{info['imgsz']}×{info['imgsz']}, largest receptive field {info['max_rf']:g} px"
    )
    return "\n".join(lines)

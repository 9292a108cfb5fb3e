"""Parameters, FLOPs and a per-layer table with output shapes and receptive fields.

Receptive field arithmetic (the course's): for a layer with kernel k, stride s, padding p, dilation d and
k' = d·(k − 1) + 1, from the input's (RF r, jump j, start):
    r_out = r + (k' − 1)·j,   j_out = j·s,   start_out = start + ((k' − 1)/2 − p)·j.
The image has r = 1, j = 1, start = 0.5 (centre of the first pixel). Values are exact for chains of layers; after
an operation outside a module (a residual add, a concat) the most recent layer's values are carried on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.MultiheadAttention)


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


def rf_step(module: nn.Module, rf: float, jump: float, start: float) -> tuple[float, float, float]:
    """(r, j, start) after ``module`` given them before it."""
    if isinstance(module, _WINDOWED):
        k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        d = _pair(getattr(module, "dilation", 1))
        pad = module.padding
        p = (d * (k - 1)) // 2 if pad == "same" else _pair(pad)
        keff = d * (k - 1) + 1
        return rf + (keff - 1) * jump, jump * s, start + ((keff - 1) / 2 - p) * jump
    if isinstance(module, nn.ConvTranspose2d):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return rf + (k - 1) * jump / s, jump / s, start
    if isinstance(module, _GLOBAL):
        return float("inf"), jump, start
    return rf, jump, start


def layer_table(net: nn.Module, x: torch.Tensor) -> list[LayerRow]:
    """Run ``x`` through ``net`` and record every leaf module (and attention blocks) in execution order."""
    rows: list[LayerRow] = []
    last = {"rf": (1.0, 1.0, 0.5)}
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            src = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            before = getattr(src, "_vk_rf", None) or last["rf"]
            after = rf_step(module, *before)
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor):
                try:
                    out._vk_rf = after
                except (AttributeError, RuntimeError):
                    pass
                shape = tuple(out.shape)
            else:
                shape = ()
            last["rf"] = after
            rows.append(LayerRow(name, type(module).__name__, shape,
                                 sum(p.numel() for p in module.parameters(recurse=True)), *after))
        return fn

    attention = [n + "." for n, m in net.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for name, m in net.named_modules():
        leaf = not any(True for _ in m.children())
        if (leaf or isinstance(m, nn.MultiheadAttention)) and not name.startswith(tuple(attention)):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
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
    finite = [r.rf for r in rows if r.rf != float("inf")]
    return {"params": params, "flops": flops, "imgsz": imgsz, "layers": rows,
            "max_rf": max(finite) if finite else 1.0}


def format_info(info: dict, name: str = "model") -> str:
    lines = [f"{'layer':<42} {'type':<20} {'output':<20} {'params':>9} {'RF':>6} {'jump':>5} {'start':>6}"]
    for r in info["layers"]:
        rf = "global" if r.rf == float("inf") else f"{r.rf:g}"
        lines.append(f"{r.name[:42]:<42} {r.kind[:20]:<20} {str(list(r.shape))[:20]:<20} {r.params:>9,} "
                     f"{rf:>6} {r.jump:>5g} {r.start:>6g}")
    lines.append(f"{name}: {info['params']:,} parameters, {info['flops'] / 1e9:.4f} GFLOPs at "
                 f"{info['imgsz']}×{info['imgsz']}, largest receptive field {info['max_rf']:g} px")
    return "\n".join(lines)

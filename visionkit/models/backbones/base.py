"""The backbone contract: ``forward(x) -> list[Tensor]`` at static ``strides`` with static ``channels``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.errors import UsageError

DEFAULT_OUT_STRIDES = (8, 16, 32)


class Backbone(nn.Module):
    """Base class. Subclasses set ``channels`` and ``strides`` and implement ``forward_features``.

    Input sizes that are not a multiple of the largest output stride are zero-padded at the right and
    bottom to the next multiple, so the feature map at stride s is always ceil(H / s) × ceil(W / s).
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    in_channels: int

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UsageError(
                f"{type(self).__name__} expects input (N, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                f"build it with in_channels={x.shape[1] if x.ndim == 4 else '?'} to change that"
            )
        m = self.strides[-1]
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


def select_strides(available: dict[int, int], out_strides, owner: str) -> tuple[int, ...]:
    """Validate requested strides against ``available`` (stride → channels); ``None`` means all the deepest 3."""
    if out_strides is None:
        out_strides = tuple(sorted(available))[-3:]
    out_strides = tuple(int(s) for s in out_strides)
    if not out_strides or list(out_strides) != sorted(set(out_strides)):
        raise UsageError(f"{owner}: out_strides must be strictly increasing, got {out_strides}")
    missing = [s for s in out_strides if s not in available]
    if missing:
        raise UsageError(
            f"{owner} cannot give stride(s) {missing}; it has {tuple(sorted(available))}. Change out_strides."
        )
    return out_strides


class StagedBackbone(Backbone):
    """A chain of stages, each ending at a known stride; returns the outputs of the requested ones.

    Stages after the deepest requested stride are dropped, so asking for fewer strides costs less.
    """

    def __init__(
        self,
        stages: list[nn.Module],
        stage_strides: list[int],
        stage_channels: list[int],
        out_strides=None,
        in_channels: int = 3,
        name: str = "backbone",
    ):
        super().__init__()
        available = {}
        for s, c in zip(stage_strides, stage_channels):
            available[s] = c  # a later stage at the same stride wins: it is the deepest
        self.strides = select_strides(available, out_strides, name)
        keep = max(i for i, s in enumerate(stage_strides) if s == self.strides[-1]) + 1
        # the output index of each requested stride is the last stage at that stride
        self._taps = [max(i for i, s in enumerate(stage_strides) if s == want) for want in self.strides]
        self.stages = nn.ModuleList(stages[:keep])
        self.channels = tuple(stage_channels[i] for i in self._taps)
        self.in_channels = in_channels

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        taps = set(self._taps)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in taps:
                out.append(x)
        return out

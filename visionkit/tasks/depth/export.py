"""What a depth network's raw output means, as one module used by prediction, validation and export alike."""

from __future__ import annotations

import torch
from torch import nn

OUTPUT_KINDS = ("inverse_depth", "log_depth")


class DepthOutput(nn.Module):
    """Raw head output (B, 1, H, W) → (B, H, W) values: metres for a metric (log-depth) or calibrated relative
    model, relative inverse depth otherwise. ``kind`` says which: 'metres' or 'inverse_depth'."""

    def __init__(self, output: str, calibration: list[float] | None = None):
        super().__init__()
        self.output, self.calibration = output, calibration
        self.kind = "metres" if output == "log_depth" or calibration is not None else "inverse_depth"

    @classmethod
    def of(cls, head) -> DepthOutput:
        return cls(getattr(head, "output_kind", "inverse_depth"), getattr(head, "calibration", None))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        y = raw[:, 0].float()
        if self.output == "log_depth":
            return torch.exp(y.clamp(max=20.0))  # exp(20) m is far beyond any scene: no overflow to inf
        if self.calibration is not None:
            scale, shift = self.calibration
            return 1.0 / (y * scale + shift).clamp(min=1e-6)
        return y


class DepthExport(nn.Module):
    """One output: ``depth`` (B, H, W) in metres, or ``inverse_depth`` (B, H, W) relative, at the input
    resolution; the metadata key ``depth_output`` says which."""

    dynamic_output_axes: dict = {}

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.values = DepthOutput.of(net.head)
        name = "depth" if self.values.kind == "metres" else "inverse_depth"
        self.output_names = (name,)
        self.dynamic_output_axes = {name: {0: "batch", 1: "height", 2: "width"}}
        self.layout = f"{name} (B, H, W) at the input resolution: " + (
            "metres"
            if self.values.kind == "metres"
            else "relative inverse depth (larger = nearer; up to an unknown scale and shift)"
        )
        self.metadata = {"depth_output": self.values.kind}
        if self.values.calibration is not None:
            self.summary = (
                f"calibration baked in: metres = 1 / ({self.values.calibration[0]:.6g} · y + "
                f"{self.values.calibration[1]:.6g})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values(self.net(x))

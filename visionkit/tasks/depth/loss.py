"""Depth losses, written from the papers.

- relative (MiDaS, Ranftl et al. 2020): the target inverse depth of each image is normalised (median 0, mean absolute
  deviation 1, over valid pixels), the prediction is aligned to it by a per-image least-squares scale and shift, and
  the loss is the mean squared residual plus the multi-scale gradient-matching term on that residual. Datasets with
  unknown depth scale and shift can be mixed.
- metric (Eigen et al. 2014; Lee et al. 2019): the prediction is log-depth; SILog = sqrt(mean d² − λ mean(d)²) with
  d = log pred − log gt over valid pixels (λ = 0.85), plus gradient matching on d.
"""

from __future__ import annotations

import torch

SILOG_LAMBDA = 0.85
GRADIENT_SCALES = 4


def least_squares_fit(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B, H, W): the scale s and shift t minimising Σ_valid (s·pred + t − target)², in closed form."""
    m = valid.float()
    n = m.sum((1, 2)).clamp(min=1)
    sp, st = (pred * m).sum((1, 2)), (target * m).sum((1, 2))
    spp, spt = (pred * pred * m).sum((1, 2)), (pred * target * m).sum((1, 2))
    det = spp * n - sp * sp
    ok = det.abs() > 1e-12
    scale = torch.where(ok, (spt * n - sp * st) / torch.where(ok, det, torch.ones_like(det)), torch.ones_like(det))
    shift = (st - scale * sp) / n
    return scale, shift


def normalise(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per image: (target − median) / mean |target − median| over valid pixels (invalid pixels left at 0). The
    median is the lower middle value for an even count, as ``Tensor.median``; all images at once (NaN marks the
    invalid pixels), which costs half of a per-image loop at 16 × 128²."""
    flat = torch.where(valid, target, torch.full_like(target, float("nan"))).flatten(1)
    med = flat.nanmedian(1).values.nan_to_num()  # an image without valid pixels: 0, and its output stays 0
    mad = (flat - med[:, None]).abs().nanmean(1).nan_to_num(1.0).clamp(min=1e-6)
    scaled = (target - med.view(-1, 1, 1)) / mad.view(-1, 1, 1)
    return torch.where(valid, scaled, torch.zeros_like(target))


def gradient_matching(residual: torch.Tensor, valid: torch.Tensor, scales: int = GRADIENT_SCALES) -> torch.Tensor:
    """Mean |∇x r| + |∇y r| over pairs of valid pixels, at ``scales`` scales (every 2^k-th pixel)."""
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, m = residual[:, ::step, ::step], valid[:, ::step, ::step].float()
        if r.shape[-1] < 2 or r.shape[-2] < 2:
            break
        mx, my = m[:, :, 1:] * m[:, :, :-1], m[:, 1:] * m[:, :-1]
        gx, gy = (r[:, :, 1:] - r[:, :, :-1]).abs() * mx, (r[:, 1:] - r[:, :-1]).abs() * my
        count = mx.sum() + my.sum()
        if count > 0:
            total = total + (gx.sum() + gy.sum()) / count
    return total


def relative_loss(
    pred: torch.Tensor, depth: torch.Tensor, grad_weight: float = 0.5
) -> tuple[torch.Tensor, dict[str, float]]:
    """Scale-and-shift-invariant loss of predicted inverse depth (B, H, W) against metric depth (0 = invalid)."""
    valid = depth > 0
    if not valid.any():
        zero = pred.sum() * 0.0
        return zero, {"loss": 0.0}
    target = normalise(torch.where(valid, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth)), valid)
    scale, shift = least_squares_fit(pred, target, valid)
    residual = (scale[:, None, None] * pred + shift[:, None, None] - target) * valid
    ssi = (residual**2).sum() / valid.sum()
    grad = gradient_matching(residual, valid)
    total = ssi + grad_weight * grad
    return total, {"loss": float(total.detach()), "ssi": float(ssi.detach()), "grad": float(grad.detach())}


def metric_loss(
    log_pred: torch.Tensor, depth: torch.Tensor, grad_weight: float = 0.5
) -> tuple[torch.Tensor, dict[str, float]]:
    """SILog of predicted log-depth (B, H, W) against metric depth (0 = invalid), plus gradient matching."""
    valid = depth > 0
    if not valid.any():
        zero = log_pred.sum() * 0.0
        return zero, {"loss": 0.0}
    d = (log_pred - torch.log(depth.clamp(min=1e-6))) * valid
    n = valid.sum()
    mean_sq, mean = (d**2).sum() / n, d.sum() / n
    silog = torch.sqrt((mean_sq - SILOG_LAMBDA * mean**2).clamp(min=1e-12))
    grad = gradient_matching(d, valid)
    total = silog + grad_weight * grad
    return total, {"loss": float(total.detach()), "silog": float(silog.detach()), "grad": float(grad.detach())}

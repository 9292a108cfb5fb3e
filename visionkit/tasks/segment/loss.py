"""Segmentation loss: pixel-wise cross-entropy (255 = ignore, optional class weights) plus an optional soft Dice
term (Milletari et al., 2016), which keeps small classes from drowning in the background's pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visionkit.data.format import IGNORE_INDEX


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in the batch's valid pixels (ignored pixels excluded)."""
    num_classes = logits.shape[1]
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(max=num_classes - 1).long(), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    dice = (2 * inter + eps) / (card + eps)
    return 1 - dice[present].mean()


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, dice: float = 0.0, class_weights: list[float] | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy (+ ``dice`` × soft Dice) of logits (N, C, H, W) against class ids (N, H, W)."""
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
    ce = F.cross_entropy(logits.float(), target.long(), weight=weight, ignore_index=IGNORE_INDEX)
    if not torch.isfinite(ce):  # every pixel ignored: nothing to learn from this batch
        ce = logits.sum() * 0.0
    total = ce
    parts = {"ce": float(ce.detach())}
    if dice > 0:
        d = soft_dice_loss(logits, target)
        total = total + dice * d
        parts["dice"] = float(d.detach())
    return total, {"loss": float(total.detach()), **parts}

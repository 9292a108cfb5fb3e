"""The explain facet of a task: what a class activation map or LIME explains for it (the network output a target
scores, the default layer, the targets a prediction gives). A task sets ``Task.explainer`` to a subclass of
:class:`Explainer` in its own folder; ``visionkit.explain`` finds it there and never names a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visionkit.errors import UsageError


@dataclass
class Target:
    """One thing to explain in one image. ``score(output)`` maps the wrapped network's output for that image (no
    batch axis) to the scalar whose gradient (or, for Score-CAM, whose value) the CAM follows; ``value`` is that
    score's meaning at the prediction (a probability, a box score, a mean depth), for captions and results."""

    label: str
    score: Callable[[torch.Tensor], torch.Tensor]
    value: float
    layer: str | None = None  # the adapter's layer for this target when layer= is not given (None: the default)
    # what LIME reads from the wrapped network's output for a perturbed copy of the image (no batch axis), when that
    # differs from ``score`` (a probability rather than a logit, a box found again wherever it now is); None: score
    lime_score: Callable[[torch.Tensor], torch.Tensor] | None = None

    def lime(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The score LIME explains for this target."""
        return self.lime_score or self.score


def class_index(spec: Any, names: list[str], task: str, takes: str = "a class name or id") -> int:
    """A class given by id (0, 1, ...) or by name → its index; a clear error listing the classes otherwise (``takes``
    says what ``task`` takes). A number is an id first, then a name (MNIST's classes are named '0'..'9')."""
    if isinstance(spec, str) and spec in names:
        return names.index(spec)
    number = None
    if isinstance(spec, int) and not isinstance(spec, bool):
        number = spec
    elif isinstance(spec, str) and spec.strip().isdigit():
        number = int(spec)
    if number is not None:
        if 0 <= number < len(names):
            return number
        if str(number) in names:
            return names.index(str(number))
    raise UsageError(
        f"bad value target={spec!r}: {task} takes {takes}; classes (id 0..{len(names) - 1}): {', '.join(names)}"
    )


class Explainer:
    """Base adapter: the network as is, whose output is a tensor with the batch first."""

    inside_head = False  # the default layer: the last spatial map before the head (False) or inside it (True)
    max_targets = 10  # default targets per image at most (boxes, classes), so a crowded image stays quick
    gallery = False  # True: one class per image from logits, so `val gallery=` can show the most confident mistakes

    def wrap(self, net: nn.Module, task) -> nn.Module:
        """The module the CAM runs: ``net``'s output turned into what the targets score (one tensor)."""
        return net

    def check_target(self, spec: Any, names: list[str]) -> None:
        """Fail on a ``target=`` this task can never take, before any image is read."""

    def prepare(self, net: nn.Module, x: torch.Tensor) -> None:
        """Called once with the network and a first input, for adapters that need its structure."""

    def default_layer(self, spatial: list[tuple[str, tuple[int, ...]]], num_outputs: int) -> str:
        """The last spatial feature map (in execution order) before the head, or (``inside_head``) the head's
        last one before its output layer (the one with ``num_outputs`` channels)."""
        outside = [n for n, _ in spatial if not n.startswith("head")]
        inside = [n for n, s in spatial if n.startswith("head") and s[1] != num_outputs]
        pool = inside if self.inside_head and inside else outside
        if not pool:
            raise UsageError("the model has no spatial feature map to explain; pass layer=")
        return pool[-1]

    def targets(self, output: torch.Tensor, prediction: dict, spec: Any, names: list[str], context) -> list[Target]:
        """The targets of one image: ``output`` is the wrapped network's output (batch of one), ``prediction`` the
        task's post-processed result for the image, ``spec`` the user's ``target=`` (None: the default)."""
        raise NotImplementedError

"""What every exported-file backend shares: the engine calls it like a torch module."""

from __future__ import annotations


class ExportedModel:
    """An exported file in place of the network: its outputs are the export layout, not the head's raw tensors
    (no loss can be computed), and the module calls the engine makes are no-ops."""

    raw_outputs = False
    head = None
    training = False

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def to(self, *args, **kwargs):
        return self

    def close(self) -> None:
        """Release what the backend holds (a MediaPipe Task); nothing for backends whose session the collector frees."""

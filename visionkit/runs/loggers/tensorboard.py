"""TensorBoard: every results.csv column per epoch, the learning rates, the time split, the training batches and
validation plots as images, the model graph (when it traces) and the settings as hparams with the final metrics.

Event files go into the run folder itself, so ``tensorboard --logdir runs`` shows every run.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.registry import register
from visionkit.runs.loggers.base import RunLogger, RunStart

HPARAMS_DIR = "hparams"  # the sub-folder add_hparams writes its own event file into


def hparam_value(value: Any) -> int | float | str | bool:
    """A setting as a value TensorBoard's hparams accept (numbers, strings and bools; anything else as text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


@register("logger", "tensorboard")
class TensorBoardLogger(RunLogger):
    """TensorBoard event files in the run folder (on when tensorboard is installed, unless tensorboard=False)."""

    name = "tensorboard"
    wants_net = True  # the graph is traced on a copy of the model

    @classmethod
    def wanted(cls, args) -> bool:
        return bool(args.tensorboard) and importlib.util.find_spec("tensorboard") is not None

    def __init__(self):
        self.writer = None
        self.settings: dict[str, Any] = {}

    def train_start(self, run: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.settings = run.settings
        # a resumed run appends to the same folder; TensorBoard keeps the newest value of a repeated step
        self.writer = SummaryWriter(log_dir=str(run.save_dir), purge_step=run.start_epoch + 1 if run.resumed else None)
        if run.net is not None and not run.resumed:
            self._graph(run.net, run.input_shape)

    def _graph(self, net, shape: tuple[int, int, int]) -> None:
        import torch

        try:
            param = next(net.parameters(), None)
            x = torch.zeros(1, *shape, device=param.device if param is not None else "cpu")
            training = net.training
            net.eval()  # in train mode dropout makes the tracer's own check of the graph fail
            try:
                with warnings.catch_warnings():  # tracer warnings about data-dependent branches are expected here
                    warnings.simplefilter("ignore")
                    self.writer.add_graph(net, x)
            finally:
                net.train(training)
        except Exception as e:  # a model that does not trace still logs everything else
            first = (str(e).strip().splitlines() or [""])[0][:200]  # a tracer's graph diff runs to pages
            warnings.warn(
                f"tensorboard: the model graph did not trace ({type(e).__name__}: {first}); skipped", stacklevel=2
            )

    def epoch_end(self, epoch: int, row: dict[str, float], lrs: list[float], times: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, epoch)
        for i, lr in enumerate(lrs):
            self.writer.add_scalar(f"lr_pg{i}", lr, epoch)
        for phase, seconds in times.items():
            self.writer.add_scalar(f"time/{phase}", seconds, epoch)
        self.writer.flush()

    def images(self, paths: list[Path], step: int) -> None:
        from PIL import Image

        for path in paths:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            self.writer.add_image(path.stem, arr, step, dataformats="HWC")
        self.writer.flush()

    def train_end(
        self, metrics: dict[str, float], artifacts: list[Path], times: dict[str, float], details: dict[str, Any]
    ) -> None:
        hparams = {k: hparam_value(v) for k, v in self.settings.items()}
        final = {f"final/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.writer.add_hparams(hparams, final, run_name=HPARAMS_DIR)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

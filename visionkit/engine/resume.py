"""The Trainer's checkpoints: what last.pt and best.pt hold, writing them, finding and restoring an interrupted
run (exactly: optimizer, scheduler, EMA, RNG of every rank), and what to tell the user after a failure."""

from __future__ import annotations

from pathlib import Path

import torch

from visionkit.cfg import Settings
from visionkit.engine.utils import set_rng_state
from visionkit.errors import CheckpointError, UsageError
from visionkit.models.checkpoint import load_checkpoint, portable_config, save_checkpoint

# keys a resumed run may change when given explicitly; everything else comes from the interrupted run's args.
# (Changing workers changes which process draws the augmentation randomness, so the run is then no longer exact.)
RESUME_OVERRIDABLE = ("device", "workers", "threads", "verbose", "plots")


class Checkpointing:
    """Mixed into the Trainer: its checkpoint and resume methods (they read and set the trainer's state)."""

    def _find_resume(self) -> dict:
        spec = self.args.resume
        if spec is True:
            pattern = Path(self.args.project) / self.task.name
            found = sorted(pattern.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise CheckpointError(f"resume=True but no last.pt under {pattern}/*/weights/; pass resume=PATH")
            path = found[-1]
        else:
            path = Path(spec)
        ckpt = load_checkpoint(path, task=self.task.name)
        if "train_state" not in ckpt:
            raise CheckpointError(f"'{path}' has no training state (only last.pt files do); resume from last.pt")
        # the run's own settings; keys newer than the checkpoint keep their defaults
        saved = Settings({**self.args, **ckpt["train_args"]})
        for key in RESUME_OVERRIDABLE:
            if key in self.explicit:
                saved[key] = self.args[key]
        if ckpt["epoch"] + 1 >= saved["epochs"]:
            raise UsageError(
                f"'{path}' already finished all {saved['epochs']} epochs; nothing to resume. Start a "
                f"new run with model={path.with_name('best.pt')} to train further"
            )
        saved["resume"] = str(path)
        self.args = saved
        self.model_config = ckpt["model_config"]
        self.save_dir = path.parent.parent
        return ckpt

    def _restore(self, ckpt: dict) -> None:
        st = ckpt["train_state"]
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.ema is not None:
            self.ema.ema.load_state_dict(ckpt["state_dict"])
            self.ema.updates = st["ema_updates"]
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        ranks = st.get("rng_ranks") or [st["rng"]]
        if len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])  # each process continues its own random streams
        elif self.verbose:
            print(
                f"resuming a {len(ranks)}-process run with {self.dist.world_size}: the data order is the same, "
                f"the augmentation randomness is not"
            )
        self.start_epoch = ckpt["epoch"] + 1
        self.best_fitness = ckpt.get("best_fitness")
        if self.verbose:
            print(f"resuming {self.save_dir} from epoch {self.start_epoch + 1}/{self.args.epochs}")

    # -- the loop -------------------------------------------------------------------------------------------------

    def _resume_hint(self) -> str:
        """What to do after a full disk: resume from last.pt, or (every epoch done) only the final plots are lost."""
        last = getattr(self, "weights_dir", None) and self.weights_dir / "last.pt"
        try:
            done = torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1 if last else None
        except Exception:  # no last.pt yet (or unreadable): nothing to resume from
            done = None
        if done is None:
            return "Free some space and start the run again"
        if done >= int(self.args.epochs):
            return f"All epochs done ({self.weights_dir} has best.pt, last.pt); only the final check and plots are lost"
        return f"{last} holds epoch {done}, whole: free some space, then train with resume={last}"

    def _checkpoint(self, epoch: int) -> dict:
        net = self.ema.ema if self.ema is not None else self.model
        return {
            "task": self.task.name,
            "model_config": portable_config(self.model_config),
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "names": list(self.data.names),
            "imgsz": self.imgsz,
            "in_channels": self.data.channels,
            "mean": list(self.data.mean),
            "std": list(self.data.std),
            "data": self.data.source,
            "train_args": dict(self.args),
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "metrics": dict(self.metrics),
            "transfer": dict(self.transfer),
        }

    def _save(self, epoch: int, improved: bool, rngs: list[dict]) -> None:
        """best.pt / last.pt (rank 0). ``rngs``: every process's random state, so a resume continues each."""
        ckpt = self._checkpoint(epoch)
        last = dict(ckpt)
        last["train_state"] = {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rngs[0],
            "rng_ranks": rngs,
        }
        save_checkpoint(last, self.weights_dir / "last.pt")
        if improved:
            save_checkpoint(ckpt, self.weights_dir / "best.pt")
        period = self.args.save_period
        if period and (epoch + 1) % period == 0:
            save_checkpoint(ckpt, self.weights_dir / f"epoch{epoch + 1}.pt")

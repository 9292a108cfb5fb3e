"""The one Trainer for every task. Tasks supply data, loss and metrics; the trainer supplies the loop."""

from __future__ import annotations

import math
import time
from contextlib import ExitStack

import torch
import yaml
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from visionkit.cfg import Settings
from visionkit.engine import distributed
from visionkit.engine.callbacks import Callbacks
from visionkit.engine.diskfull import disk_full_guard
from visionkit.engine.loggers import Loggers
from visionkit.engine.results import ResultsLog
from visionkit.engine.resume import Checkpointing
from visionkit.engine.rundir import lock_run_dir, release_run_dir
from visionkit.engine.setup import (
    EpochSeededDataset,
    EpochSeededSampler,
    ModelEMA,
    build_optimizer,
    build_scheduler,
    epoch_seed,
    make_loader,
    resolve_imgsz,
)
from visionkit.engine.threads import plan_for, use_threads
from visionkit.engine.timing import PhaseTimer
from visionkit.engine.transfer import StartingWeights
from visionkit.engine.utils import init_seeds, make_run_dir, rng_state, select_device
from visionkit.engine.validator import autocast_context, validate
from visionkit.errors import UsageError
from visionkit.models.build import build_model
from visionkit.models.checkpoint import load_checkpoint
from visionkit.models.layers import num_params
from visionkit.models.weights import freeze, load_weights
from visionkit.tasks.base import Task


def amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (true: bf16 where the GPU has it, else fp16; or 'bf16' / 'fp16'); None off
    CUDA or when amp is false."""
    if not amp or device.type != "cuda":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"amp=bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use amp=fp16 or amp=true")
    return torch.bfloat16 if amp == "bf16" or torch.cuda.is_bf16_supported() else torch.float16


class Trainer(Checkpointing, StartingWeights):
    """Train ``model_config`` for ``task`` with ``args`` (resolved config). Attributes are readable by callbacks:
    ``epoch``, ``loss``, ``metrics``, ``save_dir``, ``model``, ``ema``, ``optimizer``; set ``stop = True`` to end
    training after the current epoch."""

    def __init__(
        self,
        task: Task,
        model_config: dict,
        args: Settings,
        callbacks: Callbacks | None = None,
        init_state: dict | None = None,
        explicit: set[str] | None = None,
        init_norm: tuple[list[float], list[float]] | None = None,
    ):
        self.task = task
        self.explicit = set(explicit or ())  # keys the user actually set (the rest are defaults)
        self.args = Settings(args)
        self.callbacks = callbacks or Callbacks()
        self.model_config = dict(model_config)
        self.init_state = init_state
        self.init_norm = init_norm  # (mean, std) the starting checkpoint was trained with
        self.weights_report = None
        self.resume_ckpt = self._find_resume() if self.args.resume else None
        self.stop = False
        self.epoch = 0
        self.loss: float | None = None
        self.metrics: dict[str, float] = {}
        self.best_fitness: float | None = None
        self.verbose = bool(self.args.verbose)
        self.dist = distributed.SINGLE  # this process's place in a distributed run (set in _setup)
        self.loggers: Loggers | None = None  # the registered run loggers that want this run (rank 0 only)

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        a = self.args
        self.dist = distributed.env_info()
        self.loggers = Loggers(a, enabled=self.dist.is_main)  # before any output: a logger asked for may be missing
        if self.dist.enabled:  # a torchrun worker: join the group; rank 0 alone prints, validates and writes
            self.device = distributed.setup(a.device, self.dist)
            self.verbose = self.verbose and self.dist.is_main
        else:
            self.device = select_device(a.device)
        # intra-op threads and loader workers from the cores this process may use (shared with the other local
        # processes of a distributed run); the threads are set for the run and given back after it
        self.cpu_plan = plan_for(a, self.device)
        self._threads.enter_context(use_threads(self.cpu_plan.threads))
        a.threads, a.workers = self.cpu_plan.threads, self.cpu_plan.workers  # args.yaml holds what was used
        batch = int(a.batch)
        if batch % self.dist.world_size:
            raise UsageError(
                f"batch={batch} is the global batch and must split evenly over the "
                f"{self.dist.world_size} processes; use a multiple of {self.dist.world_size}"
            )
        # every rank builds the same initial weights (DDP starts from rank 0's anyway); ranks then draw different
        # augmentation randomness
        init_seeds(int(a.seed), bool(a.deterministic))
        self.data = self.task.resolve_data(a)
        cfg = self.model_config
        if self.resume_ckpt is None:
            self.task.configure_model(cfg, self.data, a)
            cfg["task"] = self.task.name
        self.memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
        self.model = build_model(cfg).to(self.device, memory_format=self.memory_format)
        if self.resume_ckpt is None and a.weights:
            from visionkit.models.download import resolve_weights

            # one process downloads a URL (the others would write the same .part); the rest then find the file
            path = resolve_weights(a.weights, a.sha256, self.verbose) if self.dist.is_main else None
            distributed.barrier(self.dist)
            path = path or resolve_weights(a.weights, a.sha256, False)
            self.weights_report = load_weights(self.model, path, bool(a.strict), float(a.min_loaded))
        if self.init_state is not None:
            self._load_matching(self.init_state)
        if self.resume_ckpt is None:
            self._set_normalisation()
        elif self.resume_ckpt.get("mean") is not None:  # the interrupted run's normalisation, whatever set it
            self.data.mean, self.data.std = tuple(self.resume_ckpt["mean"]), tuple(self.resume_ckpt["std"])
        # frozen parameters get no gradients (the optimizer below leaves them out); a resumed run freezes again
        self.transfer = {**freeze(self.model, a.freeze), "lr_backbone": float(a.lr_backbone)}
        if self.weights_report is not None:
            r = self.weights_report
            self.transfer.update(weights=r.source, backbone_loaded=r.backbone_loaded)
        self.task.bind(self.model)
        self.net = self._parallel(self.model)  # what the training step calls: the model, or DDP around it
        if self.dist.rank:
            init_seeds(int(a.seed) + self.dist.rank, bool(a.deterministic))
        self.imgsz = resolve_imgsz(a, cfg, self.data.native_imgsz, self.model.stride)
        a.imgsz = self.imgsz
        if self.resume_ckpt is None:  # rank 0 makes the folder and holds its lock until the run ends
            self.save_dir = distributed.broadcast(
                make_run_dir(a, self.task.name, "train", hold=True) if self.dist.is_main else None, self.dist
            )
        elif self.dist.is_main:
            lock_run_dir(self.save_dir)  # never resume a run that is still going
        self.weights_dir = self.save_dir / "weights"
        a.name = self.save_dir.name
        if self.dist.is_main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / "args.yaml").write_text(yaml.safe_dump(a.plain(), sort_keys=False))
            if self.weights_report is not None:
                self.weights_report.write(self.save_dir)
                if self.verbose:
                    self._print_weights_report()

        self.train_set = self.task.build_dataset(self.data, "train", self.imgsz, True, a)
        self.val_set = (
            self.task.build_dataset(self.data, a.split, self.imgsz, False, a) if a.val and self.dist.is_main else None
        )
        self.generator = torch.Generator()
        # one sampler for any number of processes: shuffled by (seed, epoch), rank r takes every world_size-th
        # index, so N processes together see the batches one process would; each item carries its epoch's seed
        self.sampler = EpochSeededSampler(
            DistributedSampler(
                self.train_set,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=int(a.seed),
                drop_last=False,
            )
        )
        self.train_loader = self._train_loader()
        self.val_loader = (
            make_loader(
                self.val_set,
                batch * 2,
                self.cpu_plan.workers,
                False,
                self.device,
                self.task.collate_fn(),
                persistent=True,
            )
            if self.val_set is not None
            else None
        )
        self.optimizer, self.optimizer_desc = build_optimizer(self.model, a)
        self.scheduler = build_scheduler(self.optimizer, a, len(self.train_loader))
        self.ema = ModelEMA(self.model, float(a.ema_decay)) if a.ema else None
        self.amp_dtype = amp_dtype(a.amp, self.device)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.results = ResultsLog(self.save_dir / "results.csv") if self.dist.is_main else None
        self.timer = PhaseTimer()
        self.start_epoch = 0
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)

    def _train_loader(self):
        """The training loader: persistent workers (started once, reseeded every epoch through the sampler)."""
        self.loader_state = getattr(self.train_set, "mosaic", None)  # what a persistent worker's copy holds
        return make_loader(
            EpochSeededDataset(self.train_set),
            int(self.args.batch) // self.dist.world_size,
            self.cpu_plan.workers,
            True,
            self.device,
            self.task.collate_fn(),
            self.generator,
            self.sampler,
            persistent=True,
        )

    def _parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``model`` in a distributed run (SyncBatchNorm first with sync_bn)."""
        if not self.dist.enabled:
            return model
        if self.args.sync_bn:
            if self.device.type == "cuda":
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = model
                self.task.bind(model)
            elif self.dist.is_main:
                print("sync_bn: SyncBatchNorm needs CUDA; on CPU each process normalises its own part of the batch")
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def train(self) -> dict[str, float]:
        failed = True
        self._threads = ExitStack()  # the caller's torch thread count, given back when training ends
        try:
            # a full disk, whatever was being written, ends the run with one error; last.pt stays whole
            with disk_full_guard(lambda: getattr(self, "save_dir", self.args.project), "training", self._resume_hint):
                metrics = self._train()
            failed = False
            distributed.barrier(self.dist)  # every rank returns once rank 0 has written and validated best.pt
            return metrics
        finally:
            if self.loggers is not None:
                self.loggers.close(failed)
            if getattr(self, "save_dir", None) is not None and self.dist.is_main:
                release_run_dir(self.save_dir)
            distributed.cleanup()
            self._threads.close()

    def _train(self) -> dict[str, float]:
        self._setup()
        a = self.args
        epochs = int(a.epochs)
        if self.verbose:
            procs = f", {self.dist.world_size} processes (global batch {a.batch})" if self.dist.enabled else ""
            n_frozen = self.transfer["frozen_params"]
            frozen = f", freeze={a.freeze}: {n_frozen:,} parameters frozen" if n_frozen else ""
            print(
                f"{self.task.name}: {len(self.train_set)} train / {len(self.val_set or [])} val images, "
                f"{len(self.data.names)} classes, imgsz {self.imgsz}, {num_params(self.model):,} parameters, "
                f"device {self.device}{procs}\n{self.cpu_plan.describe()}\n"
                f"optimizer: {self.optimizer_desc}, scheduler: {a.scheduler}{frozen}\n"
                f"results → {self.save_dir}"
            )
        self.callbacks.run("on_train_start", self)
        self.loggers.train_start(self)
        patience, stale = a.patience, 0
        t_start = time.time()
        for epoch in range(self.start_epoch, epochs):
            self.epoch = epoch
            self.task.epoch_start(self)
            if getattr(self.train_set, "mosaic", None) != self.loader_state:  # e.g. close_mosaic: the persistent
                self.train_loader = self._train_loader()  # workers hold the old dataset; start them again
            self.callbacks.run("on_epoch_start", self)
            t0 = time.time()
            self.loss = distributed.mean(self._train_one_epoch(epoch, epochs), self.dist, self.device)
            row = {"epoch": epoch + 1, "train_loss": self.loss}
            improved = False
            if self.val_loader is not None:  # rank 0 only; the others wait at the next collective
                with self.timer("val"):
                    net = self.ema.ema if self.ema is not None else self.model
                    self.metrics, self.last_metrics_obj = validate(
                        net,
                        self.val_loader,
                        self.task,
                        self.data.names,
                        self.device,
                        a,
                        self.amp_dtype,
                        memory_format=self.memory_format,
                    )
                row.update(self.metrics)
                self.callbacks.run("on_val_end", self)
                fitness = self.metrics[self.last_metrics_obj.fitness_key]
                improved = self.last_metrics_obj.improved(fitness, self.best_fitness)
            elif not a.val:  # no validation: the lowest training loss is best (stored negated)
                fitness = -self.loss
                improved = self.best_fitness is None or fitness > self.best_fitness
            rngs = distributed.gather(rng_state(), self.dist)
            improved, self.stop = distributed.broadcast((improved, self.stop), self.dist)
            row.update({"lr": self.optimizer.param_groups[0]["lr"], "epoch_s": time.time() - t0})
            lr_bb = [g["lr"] for g in self.optimizer.param_groups if g.get("name") == "backbone"]
            if self.transfer["lr_backbone"] != 1.0 and lr_bb:
                row["lr_backbone"] = lr_bb[0]
            if improved:
                self.best_fitness, stale = (fitness if self.dist.is_main else None), 0
            else:
                stale += 1
            if self.dist.is_main:
                self.results.append(row)
                self.loggers.epoch_end(self, row)
                with self.timer("save"):
                    self._save(epoch, improved, rngs)
            if self.verbose:
                hidden = ("epoch", "epoch_s", "lr", "lr_backbone")
                shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in hidden)
                print(f"epoch {epoch + 1}/{epochs}: {shown} ({row['epoch_s']:.1f}s)")
            self.callbacks.run("on_epoch_end", self)
            if patience and stale >= patience:
                if self.verbose:
                    print(f"early stop: no improvement for {patience} epochs (best {self.best_fitness:.4f})")
                break
            if self.stop:
                break
        if not self.dist.is_main:  # rank 0 plots and validates best.pt; the others are done
            self.callbacks.run("on_train_end", self)
            return {}
        if a.plots:
            self.results.plot(self.save_dir / "results.png")
        final = self._final_validation()
        self.callbacks.run("on_train_end", self)
        self.loggers.train_end(self, final, self.final_metrics_obj, self.plot_paths)
        if self.verbose:
            print(f"time: {self.timer.summary()}")
            print(f"done in {time.time() - t_start:.1f}s. best.pt and last.pt in {self.weights_dir}")
        return final

    def _train_one_epoch(self, epoch: int, epochs: int) -> float:
        a = self.args
        self.model.train()
        # the sampler and one generator reseeded per epoch: shuffling and worker seeds depend only on (seed, epoch,
        # rank), so a resumed run sees the same batches as an uninterrupted one
        self.sampler.set_epoch(epoch, epoch_seed(int(a.seed), epoch, self.dist.rank))
        self.generator.manual_seed(int(a.seed) + epoch + 1_000_003 * self.dist.rank)
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not self.verbose,
            dynamic_ncols=True,
            leave=False,
        )
        running, n = 0.0, 0
        clip = a.clip_grad
        # a sum over the batch (detection) is divided by the process count when DDP averages gradients: undo it
        scale = self.dist.world_size if self.task.loss_sums_over_batch else 1
        batches = iter(bar)
        while True:
            with self.timer("data"):  # waiting for the loader (decoding and augmentation when workers=0)
                raw = next(batches, None)
            if raw is None:
                break
            if n == 0 and epoch == self.start_epoch and a.plots and self.dist.is_main:
                self.loggers.images([self.task.plot_batch(raw, self.save_dir / "train_batch0.jpg", self.data.names)], 0)
            with self.timer("copy"):
                batch = self.task.preprocess_batch(raw, self.device)
            self.timer.start("step")
            with autocast_context(self.device, self.amp_dtype):
                out = self.net(batch["img"].contiguous(memory_format=self.memory_format))
            loss, items = self.task.loss(out, batch, a)
            if not math.isfinite(float(loss.detach())):
                raise UsageError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1}; lower lr0 (now "
                    f"{self.optimizer.param_groups[0]['lr']:.3g}) or check the labels"
                )
            loss = loss * scale if scale != 1 else loss
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            # tasks may report a per-image loss for display (a detector scales its total by the batch size)
            self.batch_loss = float(items.get("loss", float(loss.detach()) / scale))
            self.timer.stop("step")
            running += self.batch_loss
            n += 1
            bar.set_postfix(loss=f"{running / n:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            self.callbacks.run("on_batch_end", self)
        return running / max(n, 1)

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _final_validation(self) -> dict[str, float]:
        """Validate best.pt once more, print the per-class table and save the task's plots."""
        best = self.weights_dir / "best.pt"
        self.final_metrics_obj, self.plot_paths = None, []  # what the loggers show (the report's per-class table)
        if self.val_loader is None or not best.is_file():
            return self.metrics
        ckpt = load_checkpoint(best)
        net = build_model(ckpt["model_config"]).to(self.device, memory_format=self.memory_format)
        net.load_state_dict(ckpt["state_dict"])
        self.task.bind(net)
        metrics, obj = validate(
            net,
            self.val_loader,
            self.task,
            self.data.names,
            self.device,
            self.args,
            self.amp_dtype,
            desc="best.pt",
            memory_format=self.memory_format,
        )
        if self.verbose:
            print(obj.table())
        if self.args.plots:
            self.plot_paths = obj.plot(self.save_dir)
            self.loggers.images(self.plot_paths, self.epoch + 1)
        obj.save(self.save_dir, self.args)
        self.final_metrics_obj = obj
        self.best_path = best
        return metrics

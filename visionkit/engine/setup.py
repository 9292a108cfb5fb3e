"""Pieces the trainer, validator and LR finder share: image size, loaders, optimizer, LR schedule, EMA."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from visionkit.cfg import Settings
from visionkit.engine.threads import single_threaded_worker
from visionkit.models.layers import is_norm_or_bias

DEFAULT_LR = {"sgd": 0.01, "adamw": 0.001, "adam": 0.001}


def resolve_imgsz(args: Settings, model_config: dict, native: int | None, stride: int = 1) -> int:
    """The user's imgsz, else the preset's, else the data's native size, else 224; a multiple of ``stride``."""
    imgsz = int(args.imgsz or model_config.get("imgsz") or native or 224)
    if imgsz % stride:
        rounded = math.ceil(imgsz / stride) * stride
        print(f"imgsz={imgsz} is not a multiple of the model stride {stride}; using {rounded}")
        imgsz = rounded
    return imgsz


def _seed_worker(worker_id: int) -> None:
    # numpy and random in each worker follow torch's per-worker seed (itself derived from the loader's generator)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)
    single_threaded_worker()  # the workers are the parallelism: threads inside them would oversubscribe the cores


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The augmentation seed of one epoch on one process: a function of (seed, epoch, rank) only."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class EpochSeededSampler(Sampler):
    """Yields (index, epoch seed) pairs, so the dataset can reseed its process's random generators at the start of
    every epoch, even in persistent workers that live for the whole run (an exact resume needs that)."""

    def __init__(self, sampler):
        self.sampler, self.seed = sampler, 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        self.seed = seed

    def __iter__(self):
        seed = self.seed
        return ((i, seed) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSeededDataset(Dataset):
    """``dataset[(index, seed)]``: at the first item of a new epoch seed, python, numpy and torch in this process
    are reseeded with the seed plus the worker's id. Other attributes are the wrapped dataset's."""

    def __init__(self, dataset: Dataset):
        self.dataset, self._seed = dataset, None

    def _reseed(self, seed: int) -> None:
        if seed != self._seed:
            self._seed = seed
            worker = torch.utils.data.get_worker_info()
            offset = worker.id if worker is not None else 0
            import random

            random.seed(seed + offset)
            np.random.seed((seed + offset) % 2**32)
            torch.manual_seed(seed + offset)

    def __getitem__(self, key):
        index, seed = key
        self._reseed(seed)
        return self.dataset[index]

    def __getitems__(self, keys: list):
        """A whole batch at once (the DataLoader's batched fetch), through the dataset's own when it has one."""
        self._reseed(keys[0][1])
        indices = [index for index, _ in keys]
        batched = getattr(self.dataset, "__getitems__", None)
        return batched(indices) if batched is not None else [self.dataset[i] for i in indices]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name in ("dataset", "_seed"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def make_loader(
    dataset: Dataset,
    batch: int,
    workers: int,
    shuffle: bool,
    device: torch.device,
    collate_fn=None,
    generator: torch.Generator | None = None,
    sampler=None,
    persistent: bool = False,
) -> DataLoader:
    """A DataLoader; a dataset's own ``collate_fn`` (batched augmentation) wins over the task's. A ``sampler``
    (training: a DistributedSampler, for one process too) replaces ``shuffle``. ``persistent``: workers live
    for the whole run instead of starting again every epoch. ``workers`` as planned by
    :func:`visionkit.engine.threads.plan_cpus` (capped there at the usable cores)."""
    workers = max(0, int(workers))
    collate_fn = getattr(dataset, "collate_fn", None) or collate_fn
    if not shuffle and sampler is None and hasattr(dataset, "prepare_batches"):  # whole shaped batches (rect val)
        dataset.prepare_batches(batch)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_fn,
        generator=generator,
        worker_init_fn=_seed_worker if workers else None,
        drop_last=False,
        persistent_workers=persistent and workers > 0,
    )


def build_optimizer(model: nn.Module, args: Settings) -> tuple[torch.optim.Optimizer, str]:
    """SGD (Nesterov), AdamW or Adam; no weight decay on biases and norm layers.

    ``optimizer=auto`` picks AdamW: it converges from scratch on small data without LR tuning. The user's lr0 is
    always used when given; otherwise the chosen optimizer's default lr (sgd 0.01, adamw/adam 0.001).
    """
    name = args.optimizer
    chosen = "adamw" if name == "auto" else name
    lr = float(args.lr0) if args.lr0 is not None else DEFAULT_LR[chosen]
    # the backbone's own groups take lr0 × lr_backbone (fine-tuning pretrained weights more gently than a new head)
    backbone = getattr(model, "backbone", None)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    scale = float(args.lr_backbone)
    split = scale != 1.0 and bool(in_backbone)
    buckets: dict[tuple[bool, bool], list] = {(b, n): [] for b in (False, True) for n in (False, True)}
    for pname, p in model.named_parameters():
        if p.requires_grad:
            buckets[(split and id(p) in in_backbone, is_norm_or_bias(pname, p))].append(p)
    groups = []
    for (bb, no_wd), params in buckets.items():
        if params or not bb:  # the two plain groups always exist (param_groups[0] is the reported lr)
            group = {"params": params, "weight_decay": 0.0 if no_wd else float(args.weight_decay)}
            if bb:
                group.update(lr=lr * scale, name="backbone")
            groups.append(group)
    momentum = float(args.momentum)
    if chosen == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    elif chosen == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    else:
        opt = torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999))
    how = " (optimizer=auto)" if name == "auto" else ""
    how += f", backbone lr × {scale:g}" if split else ""
    source = "lr0" if args.lr0 is not None else "default"
    return (
        opt,
        f"{type(opt).__name__}(lr={lr:g} [{source}], momentum={momentum:g}, weight_decay="
        f"{float(args.weight_decay):g}){how}",
    )


class LRFactor:
    """Multiplier of the base lr at iteration ``it``: warmup, then cosine/linear decay to ``lrf`` (or constant).

    A plain class (not a lambda) so LambdaLR's state_dict holds only plain data.
    """

    def __init__(self, kind: str, total: int, warmup: int, lrf: float):
        self.kind, self.total, self.warmup, self.lrf = kind, max(total, 1), warmup, lrf

    def __call__(self, it: int) -> float:
        span = max(self.total - self.warmup, 1)
        t = min(max(it - self.warmup, 0) / span, 1.0)
        if self.kind == "cosine":
            f = self.lrf + (1 - self.lrf) * 0.5 * (1 + math.cos(math.pi * t))
        elif self.kind == "linear":
            f = 1 - (1 - self.lrf) * t
        else:
            f = 1.0
        if it < self.warmup:
            f *= 0.1 + 0.9 * it / self.warmup
        return f


def build_scheduler(optimizer: torch.optim.Optimizer, args: Settings, iters_per_epoch: int):
    """A per-iteration scheduler; ``onecycle`` is torch's OneCycleLR (peak lr = lr0, its own warm phase)."""
    total = int(args.epochs) * iters_per_epoch
    kind = args.scheduler
    if kind == "onecycle":
        peak = [g["lr"] for g in optimizer.param_groups]
        # OneCycleLR divides by zero when a phase is under 2 steps long: keep very short runs away from that
        steps = max(total, 4)
        pct = min(max(float(args.pct_start), 2 / steps), 0.5)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peak,
            total_steps=steps,
            pct_start=pct,
            cycle_momentum=isinstance(optimizer, torch.optim.SGD),
        )
    warmup = min(int(round(float(args.warmup_epochs) * iters_per_epoch)), total // 2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(kind, total, warmup, float(args.lrf)))


class ModelEMA:
    """Exponential moving average of weights; decay ramps up as ``decay * (1 - exp(-updates / tau))`` so early,
    random weights are forgotten quickly."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])

"""Self-supervised backbone pretraining on unlabelled images: ``visionkit pretrain data=FOLDER model=... method=...``.

The views, projection heads and losses are lightly's (MIT): SimCLR (NT-Xent between two views), BYOL (an online
network predicts a momentum target's projection) and DINO (a student matches a momentum teacher's centred,
sharpened distribution over global and local crops). visionkit supplies the backbone (any registered one, or the
backbone of any preset), the loop with its progress bar, and the checkpoint: ``weights/best.pt`` holds the
backbone's tensors in visionkit's checkpoint layout, so ``weights=`` takes it for any task. Minimal for now: one
process, no resume.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from visionkit.cfg import Range, resolve
from visionkit.errors import DataError, UsageError

METHODS = ("simclr", "byol", "dino")
# the pretrain command's own keys (shared ones, such as epochs, batch, imgsz, lr0, device, project, come from
# cfg/default.yaml)
KEYS = {
    "method": ("simclr", "self-supervised method: simclr, byol or dino (lightly's losses, heads and views)", METHODS),
    "proj_dim": (128, "pretrain: projection (output) dimension of the method's head", Range(int, 8, 65536)),
}
# lightly's views normalise with ImageNet's statistics; the checkpoint says so, and weights= passes them on
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _lightly():
    try:
        import lightly  # noqa: F401
    except ImportError as e:
        raise UsageError("visionkit pretrain needs lightly: pip install 'visionkit[pretrain]'") from e


class UnlabelledImages(Dataset):
    """Every image under a folder (recursively); each item is the list of views ``transform`` makes of it."""

    def __init__(self, folder: Path, transform):
        from visionkit.data.format import IMAGE_SUFFIXES

        if not folder.is_dir():
            raise DataError(f"pretrain data={folder}: not a folder; give a folder of unlabelled images")
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(self.files) < 2:
            raise DataError(f"pretrain data={folder}: found {len(self.files)} images ({', '.join(IMAGE_SUFFIXES)})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB"))


class _Encoder(nn.Module):
    """Backbone → global average pool of its deepest map → a vector."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[-1].mean(dim=(2, 3))


def _views(method: str, imgsz: int):
    from lightly.transforms import BYOLTransform, DINOTransform, SimCLRTransform
    from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

    if method == "simclr":
        return SimCLRTransform(input_size=imgsz, min_scale=0.2)
    if method == "byol":
        return BYOLTransform(BYOLView1Transform(input_size=imgsz), BYOLView2Transform(input_size=imgsz))
    return DINOTransform(global_crop_size=imgsz, local_crop_size=max(imgsz // 2, 8), n_local_views=2)


class _Method(nn.Module):
    """The online network, the method's heads and (BYOL, DINO) a momentum copy; ``loss(views, progress)``."""

    def __init__(self, method: str, encoder: _Encoder, dim: int, proj_dim: int, epochs: int):
        super().__init__()
        from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules import (
            BYOLPredictionHead,
            BYOLProjectionHead,
            DINOProjectionHead,
            SimCLRProjectionHead,
        )
        from lightly.models.utils import deactivate_requires_grad

        self.method, self.encoder = method, encoder
        hidden = max(256, 2 * dim)
        if method == "simclr":
            self.head = SimCLRProjectionHead(dim, hidden, proj_dim)
            self.criterion = NTXentLoss(temperature=0.2)
        elif method == "byol":
            self.head = BYOLProjectionHead(dim, hidden, proj_dim)
            self.predictor = BYOLPredictionHead(proj_dim, hidden, proj_dim)
            self.criterion = NegativeCosineSimilarity()
        else:
            self.head = DINOProjectionHead(dim, hidden, 64, proj_dim, freeze_last_layer=1)
            self.criterion = DINOLoss(output_dim=proj_dim, warmup_teacher_temp_epochs=min(5, epochs))
        if method in ("byol", "dino"):
            self.teacher_encoder = copy.deepcopy(encoder)
            # a fresh head loaded with the online one's tensors: DINO's weight-normalised layer cannot be deep-copied
            self.teacher_head = type(self.head)(*self._head_args(method, dim, hidden, proj_dim))
            self.teacher_head.load_state_dict(self.head.state_dict())
            deactivate_requires_grad(self.teacher_encoder)
            deactivate_requires_grad(self.teacher_head)

    @staticmethod
    def _head_args(method: str, dim: int, hidden: int, proj_dim: int) -> tuple:
        return (dim, hidden, proj_dim) if method == "byol" else (dim, hidden, 64, proj_dim)

    def _teacher(self, x):
        return self.teacher_head(self.teacher_encoder(x))

    def loss(self, views: list[torch.Tensor], progress: float, epoch: int) -> torch.Tensor:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        if self.method == "simclr":
            z0, z1 = (self.head(self.encoder(v)) for v in views[:2])
            return self.criterion(z0, z1)
        m = cosine_schedule(int(progress * 1000), 1000, 0.99, 1.0)
        update_momentum(self.encoder, self.teacher_encoder, m)
        update_momentum(self.head, self.teacher_head, m)
        if self.method == "byol":
            p0, p1 = (self.predictor(self.head(self.encoder(v))) for v in views[:2])
            with torch.no_grad():
                t0, t1 = (self._teacher(v) for v in views[:2])
            return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        with torch.no_grad():
            teacher = [self._teacher(v) for v in views[:2]]  # DINO: the teacher sees the global crops only
        student = [self.head(self.encoder(v)) for v in views]
        return self.criterion(teacher, student, epoch=epoch)


def _loader_worker(_: int) -> None:
    from visionkit.engine.threads import single_threaded_worker

    single_threaded_worker()


def pretrain(**overrides: Any) -> Path:
    """Pretrain a backbone without labels; returns the checkpoint (``weights/best.pt``) for ``weights=``."""
    from visionkit.api import Model
    from visionkit.engine.threads import plan_for, use_threads
    from visionkit.engine.utils import init_seeds, make_run_dir, select_device
    from visionkit.models.build import build_model
    from visionkit.models.checkpoint import portable_config, save_checkpoint

    _lightly()
    args = resolve(overrides, KEYS)
    if not args.data:
        raise UsageError("pretrain needs data=FOLDER (unlabelled images, any layout)")
    init_seeds(int(args.seed), bool(args.deterministic))
    device = select_device(args.device)
    imgsz = int(args.imgsz or 64)
    spec = Model(args.model or "yolo-n")
    config = {**spec.config, "in_channels": 3}
    net = build_model(config)  # the whole network, so the backbone's tensors keep the task model's names
    encoder = _Encoder(net.backbone)
    with torch.no_grad():
        dim = int(encoder(torch.zeros(2, 3, imgsz, imgsz)).shape[1])
    method = _Method(args.method, encoder, dim, int(args.proj_dim), int(args.epochs)).to(device)
    data = UnlabelledImages(Path(args.data), _views(args.method, imgsz))
    batch = min(int(args.batch), len(data))
    plan = plan_for(args, device)  # threads and loader workers from the usable cores, as train plans them
    loader = DataLoader(
        data,
        batch_size=batch,
        shuffle=True,
        num_workers=plan.workers,
        worker_init_fn=_loader_worker if plan.workers else None,
        drop_last=True,
        pin_memory=False,
    )
    lr = float(args.lr0) if args.lr0 is not None else 1e-3
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=float(args.weight_decay))
    total = int(args.epochs) * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.5 * (1 + math.cos(math.pi * min(it / total, 1))))
    save_dir = make_run_dir(args, "pretrain", "train")
    verbose = bool(args.verbose)
    if verbose:
        print(
            f"pretrain ({args.method}): {len(data)} images, backbone {config['backbone']['name']} "
            f"({dim}-d features), imgsz {imgsz}, batch {batch}, device {device}\n{plan.describe()}\n"
            f"results → {save_dir}"
        )
    with use_threads(plan.threads):
        best, step, t0 = math.inf, 0, time.time()
        history = []
        for epoch in range(int(args.epochs)):
            method.train()
            running, n = 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not verbose, leave=False)
            for views in bar:
                views = [v.to(device) for v in views]
                loss = method.loss(views, step / max(total, 1), epoch)
                if not math.isfinite(float(loss.detach())):
                    raise UsageError(f"pretrain loss became {float(loss)} at epoch {epoch + 1}; lower lr0")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if args.method == "dino":
                    method.head.cancel_last_layer_gradients(epoch)
                opt.step()
                sched.step()
                step += 1
                running, n = running + float(loss.detach()), n + 1
                bar.set_postfix(loss=f"{running / n:.4f}")
            epoch_loss = running / max(n, 1)
            history.append(epoch_loss)
            if verbose:
                print(f"epoch {epoch + 1}/{args.epochs}: loss {epoch_loss:.4f}")
            ckpt = {
                "task": config["task"],
                "model_config": portable_config(config),
                # the backbone alone: weights= transfers it to any task (neck and head start fresh there)
                "state_dict": {
                    k: v.detach().cpu().clone() for k, v in net.state_dict().items() if k.startswith("backbone.")
                },
                "names": list(spec.names or ["image"]),
                "imgsz": imgsz,
                "in_channels": 3,
                "mean": list(MEAN),
                "std": list(STD),
                "data": str(args.data),
                "train_args": args.plain(),
                "epoch": epoch,
                "metrics": {"loss": epoch_loss},
                "pretrain": {"method": args.method, "losses": list(history)},
            }
            save_checkpoint(ckpt, save_dir / "weights" / "last.pt")
            if epoch_loss < best:
                best = epoch_loss
                save_checkpoint(ckpt, save_dir / "weights" / "best.pt")
    if verbose:
        print(f"done in {time.time() - t0:.1f}s. weights={save_dir / 'weights' / 'best.pt'} starts any task from it")
    return save_dir / "weights" / "best.pt"

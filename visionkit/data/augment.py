"""Augmentation pipelines (torchvision.transforms.v2) built from config keys and a dataset profile."""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2

from visionkit.cfg import Settings

# defaults for augmentation keys left at null, by kind of data
PROFILES: dict[str, dict[str, float]] = {
    # digits: never flipped (a flipped 2 is not a 2), small rotations as in the course
    "digits": {"fliplr": 0.0, "flipud": 0.0, "degrees": 7.0, "crop_scale": 1.0, "color_jitter": 0.0},
    # clothing and other grey objects: flips are fine
    "grey-objects": {"fliplr": 0.5, "flipud": 0.0, "degrees": 5.0, "crop_scale": 1.0, "color_jitter": 0.0},
    "photos": {"fliplr": 0.5, "flipud": 0.0, "degrees": 0.0, "crop_scale": 0.8, "color_jitter": 0.2},
}
AUG_KEYS = ("fliplr", "flipud", "degrees", "crop_scale", "color_jitter")


def resolve_augment(args: Settings, profile: str) -> dict[str, float]:
    """Augmentation keys with nulls filled from ``profile``."""
    base = PROFILES[profile]
    return {k: float(base[k] if args[k] is None else args[k]) for k in AUG_KEYS}


class CoarseDropout(torch.nn.Module):
    """With probability ``p``, erase 1..``max_holes`` squares of side ``size`` × min(H, W) (value 0 = the mean
    after normalisation). Many small holes (coarse dropout) rather than one big one (cutout)."""

    def __init__(self, p: float = 0.5, max_holes: int = 8, size: float = 0.1):
        super().__init__()
        self.p, self.max_holes, self.size = p, max_holes, size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        h, w = img.shape[-2:]
        side = max(1, round(self.size * min(h, w)))
        img = img.clone()
        for _ in range(int(torch.randint(1, self.max_holes + 1, ()))):
            y = int(torch.randint(0, max(1, h - side + 1), ()))
            x = int(torch.randint(0, max(1, w - side + 1), ()))
            img[..., y : y + side, x : x + side] = 0
        return img


def classify_transforms(
    imgsz: int,
    train: bool,
    aug: dict[str, float],
    args: Settings,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    native_size: int | None = None,
) -> v2.Compose:
    """uint8 CHW tensor → normalised float CHW tensor of size ``imgsz``; random only when ``train``."""
    ops: list[Any] = []
    if train and aug["crop_scale"] < 1.0:
        ops.append(v2.RandomResizedCrop(imgsz, scale=(aug["crop_scale"], 1.0), antialias=True))
    elif native_size != imgsz:
        ops.append(v2.Resize((imgsz, imgsz), antialias=True))
    if train:
        if aug["fliplr"] > 0:
            ops.append(v2.RandomHorizontalFlip(aug["fliplr"]))
        if aug["flipud"] > 0:
            ops.append(v2.RandomVerticalFlip(aug["flipud"]))
        if aug["degrees"] > 0:
            ops.append(v2.RandomRotation(aug["degrees"]))
        if aug["color_jitter"] > 0 and len(mean) == 3:
            j = aug["color_jitter"]
            ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train:
        if args.cutout > 0:
            ops.append(v2.RandomErasing(p=args.cutout, scale=(0.02, 0.2), value=0))
        if args.coarse_dropout > 0:
            ops.append(CoarseDropout(args.coarse_dropout, int(args.dropout_holes), float(args.dropout_size)))
    return v2.Compose(ops)


def classify_decode_side(imgsz: int, train: bool, aug: dict[str, float]) -> int:
    """The short side an image needs for ``classify_transforms``: ``imgsz``, or for a random crop that may keep
    only ``crop_scale`` of the area, enough that the smallest crop still spans ``imgsz`` pixels."""
    if train and aug["crop_scale"] < 1.0:
        return math.ceil(imgsz / math.sqrt(max(aug["crop_scale"], 1e-3)))
    return imgsz


class BatchAugment(torch.nn.Module):
    """The classification augmentations applied to a whole batch at once (uint8 or float (B, C, H, W) in,
    normalised float out), for in-memory datasets where per-sample transforms would cost more than the
    network: one affine warp (rotation, zoom as a random-resized-crop stand-in, translation), flips,
    brightness/contrast jitter, cutout and coarse dropout, each drawn per image from torch's RNG.
    """

    def __init__(
        self,
        imgsz: int,
        train: bool,
        aug: dict[str, float],
        args: Settings,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        super().__init__()
        self.imgsz, self.train_mode, self.aug = imgsz, train, aug
        self.cutout = args.cutout if train else 0.0
        self.coarse = args.coarse_dropout if train else 0.0
        self.holes = int(args.dropout_holes)
        self.hole_size = float(args.dropout_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (self.imgsz, self.imgsz):
            x = torch.nn.functional.interpolate(
                x, size=(self.imgsz, self.imgsz), mode="bilinear", antialias=True, align_corners=False
            )
        if self.train_mode:
            x = self._geometric(x)
            x = self._photometric(x)
        x = (x - self.mean) / self.std
        if self.cutout > 0:
            x = self._erase(x, self.cutout, holes=1, side=None)
        if self.coarse > 0:
            x = self._erase(x, self.coarse, holes=self.holes, side=self.hole_size)
        return x

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        a = self.aug
        if a["degrees"] > 0 or a["crop_scale"] < 1.0:
            angle = (torch.rand(b) * 2 - 1) * a["degrees"] * torch.pi / 180
            # zoom in by up to 1/sqrt(crop_scale): the area kept matches RandomResizedCrop's scale range
            zoom = 1 + torch.rand(b) * (1 / max(a["crop_scale"], 1e-3) ** 0.5 - 1)
            shift = (torch.rand(b, 2) * 2 - 1) * (1 - 1 / zoom)[:, None]
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = torch.nn.functional.affine_grid(theta.to(x), list(x.shape), align_corners=False)
            x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if a["fliplr"] > 0:
            flip = (torch.rand(b) < a["fliplr"]).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        if a["flipud"] > 0:
            flip = (torch.rand(b) < a["flipud"]).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-2), x)
        return x

    def _photometric(self, x: torch.Tensor) -> torch.Tensor:
        j = self.aug["color_jitter"]
        if j <= 0:
            return x
        b = x.shape[0]
        bright = (1 + (torch.rand(b) * 2 - 1) * j).to(x).view(-1, 1, 1, 1)
        contrast = (1 + (torch.rand(b) * 2 - 1) * j).to(x).view(-1, 1, 1, 1)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x * bright - m) * contrast + m).clamp(0, 1)

    @staticmethod
    def _erase(x: torch.Tensor, p: float, holes: int, side: float | None) -> torch.Tensor:
        b, _, h, w = x.shape
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        apply = torch.rand(b) < p
        count = torch.randint(1, holes + 1, (b,))
        keep = torch.ones(b, 1, h, w, dtype=torch.bool, device=x.device)
        for k in range(holes):
            if side is None:  # cutout: a rectangle of 2-20 % of the image, aspect 0.3-3.3
                area = (0.02 + torch.rand(b) * 0.18) * h * w
                ratio = torch.exp(torch.empty(b).uniform_(-1.2, 1.2))
                hh = (area * ratio).sqrt().clamp(1, h).long()
                ww = (area / ratio).sqrt().clamp(1, w).long()
            else:
                hh = torch.full((b,), max(1, round(side * min(h, w))))
                ww = hh.clone()
            y0 = (torch.rand(b) * (h - hh + 1)).long()
            x0 = (torch.rand(b) * (w - ww + 1)).long()
            on = (apply & (k < count)).view(b, 1, 1).to(x.device)
            hole = (
                (ys >= y0.view(b, 1, 1).to(x.device))
                & (ys < (y0 + hh).view(b, 1, 1).to(x.device))
                & (xs >= x0.view(b, 1, 1).to(x.device))
                & (xs < (x0 + ww).view(b, 1, 1).to(x.device))
            )
            keep &= ~(hole & on).unsqueeze(1)
        return x * keep

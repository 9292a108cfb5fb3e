"""Augmentation pipelines (torchvision.transforms.v2) built from config keys and a dataset profile."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

# defaults for augmentation keys left at null, by kind of data
PROFILES: dict[str, dict[str, float]] = {
    # digits: never flipped (a flipped 2 is not a 2), small rotations as in the course
    "digits": {"fliplr": 0.0, "flipud": 0.0, "degrees": 7.0, "crop_scale": 1.0, "color_jitter": 0.0},
    # clothing and other grey objects: flips are fine
    "grey-objects": {"fliplr": 0.5, "flipud": 0.0, "degrees": 5.0, "crop_scale": 1.0, "color_jitter": 0.0},
    "photos": {"fliplr": 0.5, "flipud": 0.0, "degrees": 0.0, "crop_scale": 0.8, "color_jitter": 0.2},
}
AUG_KEYS = ("fliplr", "flipud", "degrees", "crop_scale", "color_jitter")


def resolve_augment(args: dict[str, Any], profile: str) -> dict[str, float]:
    """Augmentation keys with nulls filled from ``profile``."""
    base = PROFILES[profile]
    return {k: float(base[k] if args.get(k) is None else args[k]) for k in AUG_KEYS}


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
            img[..., y:y + side, x:x + side] = 0
        return img


def classify_transforms(imgsz: int, train: bool, aug: dict[str, float], args: dict[str, Any],
                        mean: tuple[float, ...], std: tuple[float, ...], native_size: int | None = None) -> v2.Compose:
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
        if args.get("cutout", 0) > 0:
            ops.append(v2.RandomErasing(p=args["cutout"], scale=(0.02, 0.2), value=0))
        if args.get("coarse_dropout", 0) > 0:
            ops.append(CoarseDropout(args["coarse_dropout"], int(args.get("dropout_holes", 8)),
                                     float(args.get("dropout_size", 0.1))))
    return v2.Compose(ops)

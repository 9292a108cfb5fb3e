"""Image classification: ImageFolder, IDX, CIFAR-10 and TinyImageNet data, cross-entropy, top-1/top-5/per-class
accuracy, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from visionkit.cfg import Range, Settings
from visionkit.data import cifar, idx, tinyimagenet
from visionkit.data.augment import BatchAugment, classify_decode_side, classify_transforms, resolve_augment
from visionkit.data.datasets import ArrayDataset, FileListDataset, ImageFolderDataset, read_image
from visionkit.data.format import class_folders, load_data_yaml
from visionkit.data.synthetic import ensure_shapes
from visionkit.errors import DataError
from visionkit.registry import register
from visionkit.tasks.base import DataInfo, Task
from visionkit.tasks.classify.explain import ClassifyExplainer
from visionkit.tasks.classify.export import ClassifyExport
from visionkit.tasks.classify.labelstudio import ChoiceRegions
from visionkit.tasks.classify.metrics import ClassifyMetrics

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register("task", "classify")
class ClassifyTask(Task):
    """Image classification: ImageFolder, MNIST/Fashion-MNIST IDX, CIFAR-10, TinyImageNet or shapes; top-1/top-5,
    confusion matrix."""

    explainer = ClassifyExplainer
    mediapipe_kind = "classifier"
    labelstudio = ChoiceRegions()

    name = "classify"
    default_model = "mnist-tiny"
    default_data = "shapes"
    default_head = "linear"
    bare_default = True
    keys = {
        "label_smoothing": (0.0, "cross-entropy label smoothing", Range(float, 0, 1, open_high=True)),
        "download": (
            False,
            "data=cifar10: fetch the CIFAR-10 batches through torchvision when root= lacks them "
            "(visionkit never downloads unless asked)",
        ),
    }

    # -- data ---------------------------------------------------------------------------------------------------
    def resolve_data(self, args: Settings) -> DataInfo:
        data = args.data or self.default_data
        datasets_dir = Path(args.datasets_dir)
        key = str(data).lower()
        if key in idx.IDX_NAMES:
            candidates = [Path(args.root)] if args.root else []
            folder = idx.find_idx_dir(key, candidates + [datasets_dir / key])
            mean, std = idx.IDX_NORM[key]
            return DataInfo(
                idx.IDX_NAMES[key],
                1,
                mean,
                std,
                source=key,
                native_imgsz=28,
                profile="digits" if key == "mnist" else "grey-objects",
                extra={"idx_dir": str(folder)},
            )
        if key in ("cifar10", "cifar-10"):
            return self._cifar_info(args, datasets_dir)
        if key in ("tinyimagenet", "tiny-imagenet"):
            candidates = [Path(args.root)] if args.root else []
            root = tinyimagenet.find_root(candidates + [datasets_dir / "tinyimagenet"])
            layout = tinyimagenet.read_layout(root)
            return DataInfo(
                layout.names,
                3,
                IMAGENET_MEAN,
                IMAGENET_STD,
                source="tinyimagenet",
                native_imgsz=tinyimagenet.NATIVE_IMGSZ,
                extra={"tinyimagenet_root": str(layout.root)},
            )
        if key == "shapes":
            root = ensure_shapes(datasets_dir / "shapes", verbose=args.verbose)
            return self._folder_info(root / "classify", source=str(root / "data.yaml"))
        path = Path(data)
        if path.suffix in (".yaml", ".yml"):
            spec = load_data_yaml(path)
            if spec.get("classify"):  # the classification view of a detection/segmentation dataset
                return self._folder_info(
                    spec["root"] / spec["classify"], source=str(path), names=spec.get("classify_names")
                )
            return self._folder_info(spec["root"], source=str(path), names=spec.get("names"))
        if path.is_dir():
            return self._folder_info(path, source=str(path))
        raise DataError(
            f"dataset '{data}' not found: give a folder with train/<class>/ and val/<class>/, a data.yaml, "
            f"or one of: shapes, {', '.join(idx.IDX_NAMES)}, cifar10, tinyimagenet"
        )

    def _cifar_info(self, args: Settings, datasets_dir: Path) -> DataInfo:
        candidates = ([Path(args.root)] if args.root else []) + [datasets_dir / "cifar10"]
        folder = cifar.find_cifar_dir(candidates)
        if folder is None:
            if not args.download:
                raise cifar.missing_error(candidates)
            folder = cifar.download_cifar10(candidates[0])
        return DataInfo(
            cifar.load_names(folder),
            3,
            cifar.CIFAR10_MEAN,
            cifar.CIFAR10_STD,
            source="cifar10",
            native_imgsz=32,
            profile="photos",
            extra={"cifar_dir": str(folder)},
        )

    def _folder_info(self, root: Path, source: str, names: list[str] | None = None) -> DataInfo:
        if not (root / "train").is_dir():
            raise DataError(
                f"classification dataset '{root}' has no train/ folder; expected "
                f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
            )
        names = names or [f.name for f in class_folders(root / "train")]
        if not names:
            raise DataError(f"'{root / 'train'}' has no class folders; expected {root}/train/<class name>/<images>")
        return DataInfo(names, 3, IMAGENET_MEAN, IMAGENET_STD, source=source, extra={"root": str(root)})

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings):
        aug = resolve_augment(args, data.profile)
        fraction = float(args.fraction) if train else 1.0
        if "idx_dir" in data.extra:
            images, labels = idx.load_idx_split(Path(data.extra["idx_dir"]), split)
            batch_tf = BatchAugment(imgsz, train, aug, args, data.mean, data.std)
            return ArrayDataset(images, labels, data.names, batch_tf, fraction)
        if "cifar_dir" in data.extra:  # 60k 32×32 images fit in 180 MB: served from memory like MNIST
            images, labels = cifar.load_split(Path(data.extra["cifar_dir"]), split, len(data.names))
            batch_tf = BatchAugment(imgsz, train, aug, args, data.mean, data.std)
            return ArrayDataset(images, labels, data.names, batch_tf, fraction)
        tf = classify_transforms(imgsz, train, aug, args, data.mean, data.std, data.native_imgsz)
        decode_side = classify_decode_side(imgsz, train, aug)  # large JPEGs decoded no larger than this needs
        if "tinyimagenet_root" in data.extra:
            layout = tinyimagenet.read_layout(Path(data.extra["tinyimagenet_root"]))
            return FileListDataset(
                tinyimagenet.split_samples(layout, split),
                data.names,
                tf,
                data.channels,
                cache=bool(args.cache),
                fraction=fraction,
                where=f"{layout.root} ({split})",
                decode_side=decode_side,
            )
        split_dir = Path(data.extra["root"]) / split
        if split == "val" and not split_dir.is_dir() and (split_dir.parent / "valid").is_dir():
            split_dir = split_dir.parent / "valid"  # Roboflow's folder exports name the validation split valid/
        if split != "train" and not split_dir.is_dir():
            raise DataError(
                f"classification dataset '{data.extra['root']}' has no {split}/ folder; "
                f"add {split_dir}/<class>/*.jpg (or pass val=false to train without validation)"
            )
        return ImageFolderDataset(
            split_dir,
            data.names,
            tf,
            data.channels,
            cache=bool(args.cache),
            require_all_classes=train,
            fraction=fraction,
            decode_side=decode_side,
        )

    def preprocess_batch(self, batch, device: torch.device) -> dict[str, Any]:
        x, y = batch
        non_blocking = device.type == "cuda"
        return {"img": x.to(device, non_blocking=non_blocking), "cls": y.to(device, non_blocking=non_blocking)}

    # -- training and validation ---------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, batch: dict[str, Any], args: Settings):
        loss = F.cross_entropy(outputs.float(), batch["cls"], label_smoothing=float(args.label_smoothing))
        return loss, {"loss": float(loss.detach())}

    def new_metrics(self, names: list[str]) -> ClassifyMetrics:
        return ClassifyMetrics(names)

    # -- prediction ----------------------------------------------------------------------------------------------
    def load_inputs(self, items: list, imgsz: int, channels: int, mean, std, rect: bool = False):
        batch = []  # a classifier is trained on imgsz×imgsz: always square
        for item in items:
            img = _rgb(item, channels)
            img = cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_AREA).reshape(imgsz, imgsz, channels)
            x = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
            batch.append((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])
        return torch.stack(batch), [None] * len(items)

    def postprocess(self, outputs: torch.Tensor, context: list, args: Settings, names: list[str]) -> list[dict]:
        probs = outputs.float().softmax(1).cpu()
        k = min(int(args.topk), probs.shape[1])
        top = probs.topk(k, dim=1)
        return [
            {"top": [{"class": int(c), "name": names[int(c)], "score": round(float(s), 6)} for s, c in zip(ss, cc)]}
            for ss, cc in zip(top.values, top.indices)
        ]

    def export_wrapper(self, net, args: Settings):
        return ClassifyExport(net)

    def edge_graph(self, net, inputs, size, args: Settings):
        from visionkit.export.graphs import ClassifierGraph

        return ClassifierGraph(net, inputs)

    def describe(self, result: dict) -> str:
        return ", ".join(f"{t['name']} {t['score']:.3f}" for t in result["top"])

    def annotate(self, item, result: dict, channels: int):
        img = item.copy() if isinstance(item, np.ndarray) else cv2.imread(str(item), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image '{item}'")
        scale = max(img.shape[:2]) / 400
        if scale < 1:  # tiny images (MNIST) are enlarged so the text stays readable
            img = cv2.resize(img, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_NEAREST)
        y = 20
        for t in result["top"][:3]:
            cv2.putText(img, f"{t['name']} {t['score']:.2f}", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
            cv2.putText(img, f"{t['name']} {t['score']:.2f}", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
            y += 22
        return img


def _rgb(item, channels: int) -> np.ndarray:
    """A path or a BGR frame → RGB (H, W, 3) or grey (H, W, 1) uint8."""
    if not isinstance(item, np.ndarray):
        return read_image(item, channels)
    if channels == 1:
        return cv2.cvtColor(item, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(item, cv2.COLOR_BGR2RGB)

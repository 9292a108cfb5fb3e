"""Named model presets (kind ``model``): each returns a model config plus its native image size."""

from __future__ import annotations

from visionkit.registry import register


@register("model", "mnist-tiny")
def mnist_tiny() -> dict:
    """Course MNIST net, < 20k parameters (17,521), 28×28 grey digits."""
    # width 19 (from 16, 13,034 parameters): the budget spent on width took the worst of five seeds from 99.39 %
    # to >= 99.4 % (docs/course.md)
    return {
        "task": "classify",
        "imgsz": 28,
        "in_channels": 1,
        "num_classes": 10,
        "backbone": {"name": "mnist_net", "out_strides": [4], "width": 19},
        "head": {"name": "linear"},
    }


@register("model", "mnist-8k")
def mnist_8k() -> dict:
    """Course MNIST net, < 8k parameters (7,750), 28×28 grey digits."""
    # no dropout: at 7.7k parameters the net underfits (train loss stays above val loss); rotation regularises.
    # BN before the activation: over five seeds 99.44 % mean against 99.40 with the course's conv → ReLU → BN.
    # SiLU for ReLU (no parameters): every one of seeds 0-4 >= 99.41 % at 1 and at 2 threads (docs/course.md)
    return {
        "task": "classify",
        "imgsz": 28,
        "in_channels": 1,
        "num_classes": 10,
        "backbone": {"name": "mnist_lean", "out_strides": [4], "dropout": 0.0, "bn_order": "bn-relu", "act": "silu"},
        "head": {"name": "linear"},
    }


@register("model", "cifar-dilated")
def cifar_dilated() -> dict:
    """Depthwise-separable + dilated CNN, no max-pooling, RF > 44, < 200k parameters, 32×32 colour."""
    return {
        "task": "classify",
        "imgsz": 32,
        "in_channels": 3,
        "num_classes": 10,
        "backbone": {"name": "cifar_dilated", "out_strides": [8]},
        "head": {"name": "linear", "dropout": 0.1},
    }


@register("model", "vit-tiny")
def vit_tiny() -> dict:
    """Small ViT (patch 4) for 32×32 images."""
    return {
        "task": "classify",
        "imgsz": 32,
        "in_channels": 3,
        "num_classes": 10,
        "backbone": {"name": "vit_tiny", "imgsz": 32},
        "head": {"name": "linear"},
    }


def torchvision_classifier(backbone: str, imgsz: int = 224) -> dict:
    """A torchvision backbone with a linear head over 1000 classes (training sets the real number)."""
    return {
        "task": "classify",
        "imgsz": imgsz,
        "in_channels": 3,
        "num_classes": 1000,
        "backbone": {"name": backbone, "out_strides": [32]},
        "head": {"name": "linear", "dropout": 0.2},
    }


@register("model", "resnet18-cls")
def resnet18_cls() -> dict:
    """torchvision ResNet-18 classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("resnet18")


@register("model", "resnet34-cls")
def resnet34_cls() -> dict:
    """torchvision ResNet-34 classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("resnet34")


@register("model", "resnet50-cls")
def resnet50_cls() -> dict:
    """torchvision ResNet-50 classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("resnet50")


@register("model", "mobilenet-v3-small-cls")
def mobilenet_v3_small_cls() -> dict:
    """torchvision MobileNetV3-small classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("mobilenet_v3_small")


@register("model", "mobilenet-v3-large-cls")
def mobilenet_v3_large_cls() -> dict:
    """torchvision MobileNetV3-large classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("mobilenet_v3_large")


@register("model", "efficientnet-b0-cls")
def efficientnet_b0_cls() -> dict:
    """torchvision EfficientNet-B0 classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("efficientnet_b0")


@register("model", "convnext-tiny-cls")
def convnext_tiny_cls() -> dict:
    """torchvision ConvNeXt-tiny classifier at 224px (weights=PATH for local weights)."""
    return torchvision_classifier("convnext_tiny")


def yolo(scale: str) -> dict:
    """CSPDarknet at ``scale`` + PAN + the anchor-free DFL head."""
    return {
        "task": "detect",
        "imgsz": 640,
        "in_channels": 3,
        "num_classes": 80,
        "backbone": {"name": "csp_darknet", "scale": scale, "out_strides": [8, 16, 32]},
        "neck": {"name": "pan", "depth": {"p": 1, "n": 1, "s": 1, "m": 2}[scale]},
        "head": {"name": "yolo"},
    }


@register("model", "yolo-n")
def yolo_n() -> dict:
    """YOLO detector, scale n: CSPDarknet-n + PAN + anchor-free DFL head."""
    return yolo("n")


@register("model", "yolo-s")
def yolo_s() -> dict:
    """YOLO detector, scale s: CSPDarknet-s + PAN + anchor-free DFL head."""
    return yolo("s")


def yolo_e2e(scale: str) -> dict:
    """``yolo(scale)`` with the NMS-free head: one-to-many and one-to-one branches, inference without NMS, boxes
    regressed without DFL (reg_max=1: at 10 epochs on shapes mAP50-95 0.386 against 0.350 with DFL, and 0.85x the
    multiply-adds at n; docs/export.md)."""
    config = yolo(scale)
    config["head"] = {"name": "yolo_e2e", "reg_max": 1}
    return config


@register("model", "yolo-n-e2e")
def yolo_n_e2e() -> dict:
    """YOLO detector, scale n, end-to-end: CSPDarknet-n + PAN + NMS-free head (YOLOv10's dual assignments), no DFL."""
    return yolo_e2e("n")


@register("model", "yolo-s-e2e")
def yolo_s_e2e() -> dict:
    """YOLO detector, scale s, end-to-end: CSPDarknet-s + PAN + NMS-free head (YOLOv10's dual assignments), no DFL."""
    return yolo_e2e("s")


@register("model", "yolo-p-e2e")
def yolo_p_e2e() -> dict:
    """The fastest YOLO detector: CSPDarknet-p (pico, 3/4 of n's width) + PAN + NMS-free head without DFL, with ReLU
    for SiLU: onnxruntime folds ReLU into each conv, in float and in int8 (SiLU leaves a sigmoid and a product
    after every conv, two more requantised ops in an int8 file). At 10 epochs on shapes it cost 0.054 mAP50-95
    (two seeds) and bought 0.86x -> 0.78x YOLO26n's ONNX latency and an int8 file at half the float one's
    latency (docs/export.md)."""
    config = yolo_e2e("p")
    config["act"] = "relu"
    return config


def yolo_seg(scale: str) -> dict:
    """``yolo(scale)`` for instance segmentation: the detection head plus mask coefficients and prototypes."""
    config = yolo(scale)
    config["task"] = "instance"
    config["head"] = {"name": "yolo_seg"}
    return config


@register("model", "yolo-n-seg")
def yolo_n_seg() -> dict:
    """YOLO instance segmenter, scale n: CSPDarknet-n + PAN + detection head with YOLACT mask prototypes."""
    return yolo_seg("n")


@register("model", "yolo-s-seg")
def yolo_s_seg() -> dict:
    """YOLO instance segmenter, scale s: CSPDarknet-s + PAN + detection head with YOLACT mask prototypes."""
    return yolo_seg("s")


@register("model", "yolo-m")
def yolo_m() -> dict:
    """YOLO detector, scale m: CSPDarknet-m + PAN + anchor-free DFL head."""
    return yolo("m")


@register("model", "yolo-mobile")
def yolo_mobile() -> dict:
    """Mobile detector: MobileNetV3-small backbone + PAN (64 channels) + YOLO head."""
    return {
        "task": "detect",
        "imgsz": 320,
        "in_channels": 3,
        "num_classes": 80,
        "backbone": {"name": "mobilenet_v3_small", "out_strides": [8, 16, 32]},
        "neck": {"name": "pan", "channels": [64, 64, 64]},
        "head": {"name": "yolo"},
    }


UNET_STRIDES = [2, 4, 8, 16, 32]


@register("model", "unet-n")
def unet_n() -> dict:
    """U-Net segmenter: CSPDarknet-n encoder (strides 2-32) + U-Net decoder."""
    return {
        "task": "segment",
        "imgsz": 320,
        "in_channels": 3,
        "num_classes": 2,
        "backbone": {"name": "csp_darknet", "scale": "n", "out_strides": UNET_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "unet"},
    }


@register("model", "unet-r18")
def unet_r18() -> dict:
    """U-Net segmenter: torchvision ResNet-18 encoder (weights=PATH for local ImageNet weights) + U-Net decoder."""
    return {
        "task": "segment",
        "imgsz": 320,
        "in_channels": 3,
        "num_classes": 2,
        "backbone": {"name": "resnet18", "out_strides": UNET_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "unet"},
    }


@register("model", "unet-mobile")
def unet_mobile() -> dict:
    """U-Net segmenter for phones: MobileNetV3-small encoder + U-Net decoder."""
    return {
        "task": "segment",
        "imgsz": 320,
        "in_channels": 3,
        "num_classes": 2,
        "backbone": {"name": "mobilenet_v3_small", "out_strides": UNET_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "unet"},
    }


DEPTH_STRIDES = [4, 8, 16, 32]


@register("model", "depth-n")
def depth_n() -> dict:
    """Monocular depth: CSPDarknet-n encoder (strides 4-32) + DPT fusion head (fused at the encoder's width, 32)."""
    return {
        "task": "depth",
        "imgsz": 256,
        "in_channels": 3,
        "num_classes": 1,
        "backbone": {"name": "csp_darknet", "scale": "n", "out_strides": DEPTH_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "dpt"},
    }


@register("model", "midas-small")
def midas_small() -> dict:
    """Monocular depth after MiDaS v2.1 small: a mobile encoder (EfficientNet-B0) + fusion head."""
    return {
        "task": "depth",
        "imgsz": 256,
        "in_channels": 3,
        "num_classes": 1,
        "backbone": {"name": "efficientnet_b0", "out_strides": DEPTH_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "dpt", "features": 64},
    }


@register("model", "dpt-vit-tiny")
def dpt_vit_tiny() -> dict:
    """DPT on a tiny ViT: tokens reassembled into strides 4-32, fusion head."""
    return {
        "task": "depth",
        "imgsz": 128,
        "in_channels": 3,
        "num_classes": 1,
        "backbone": {"name": "vit_tiny", "imgsz": 128, "out_strides": DEPTH_STRIDES},
        "neck": {"name": "identity"},
        "head": {"name": "dpt", "features": 64},
    }

"""Monocular depth: depth/ maps, a DPT/MiDaS-style head on any backbone, relative (scale-and-shift-invariant) or metric
(SILog) training, the standard depth metrics at the original resolution, calibration of a relative model to metres,
colourised maps, raw .npy / 16-bit PNG maps and point clouds, ONNX export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from visionkit.cfg import Range, Settings
from visionkit.data.rules import DatasetRules
from visionkit.data.transforms import content_box
from visionkit.errors import CheckpointError, UsageError
from visionkit.registry import register
from visionkit.tasks.base import DataInfo
from visionkit.tasks.depth.dataset import DepthDataset
from visionkit.tasks.depth.explain import DepthExplainer
from visionkit.tasks.depth.export import DepthExport, DepthOutput
from visionkit.tasks.depth.loss import metric_loss, relative_loss
from visionkit.tasks.depth.metrics import DepthMetrics, score_image
from visionkit.tasks.shared import DenseTask, joint_augment_args, read_bgr, resolve_yaml_data, split_files

DEPTH_MODES = ("relative", "metric")


@register("task", "depth")
class DepthTask(DenseTask):
    """Monocular depth: DPT fusion head, relative (MiDaS SSI) or metric (SILog) depth, δ1/AbsRel/RMSE, calibrate."""

    explainer = DepthExplainer
    mediapipe_kind = "value_map"

    name = "depth"
    default_model = "depth-n"
    default_data = "shapes"
    dense_key = "depth"
    default_neck = "identity"
    default_head = "dpt"
    backbone_strides = (4, 8, 16, 32)
    modes = ("calibrate",)
    dataset_rules = DatasetRules(reads=("depth",), usable=("depth",))
    keys = {
        "depth_mode": (
            "relative",
            "relative: inverse depth up to scale and shift (MiDaS loss, any mix of datasets); "
            "metric: metres (log-depth head, SILog loss)",
            DEPTH_MODES,
        ),
        "grad_weight": (0.5, "weight of the multi-scale gradient-matching loss", Range(float, 0, 100)),
        "max_depth": (
            None,
            "metrics: clip predicted depth to this many metres (null = each image's largest valid depth)",
            Range(float, 0, 1e6, open_low=True),
        ),
        "mosaic": (0.0, "depth: off by default (a mosaic puts four scenes of unrelated depth scale in one image)"),
        "save_depth": (False, "predict: save raw maps: depth/<image>.npy (float32) and a 16-bit PNG (mm when metric)"),
        "save_ply": (
            False,
            "predict: save a coloured point cloud per image (depth/<image>.ply; needs metres for true scale)",
        ),
        "fov": (
            60.0,
            "save_ply: horizontal field of view of the camera in degrees",
            Range(float, 0, 180, open_low=True, open_high=True),
        ),
    }

    def __init__(self):
        self.values: DepthOutput | None = None  # PyTorch: raw head output → values; an exported file: None
        self.kind = "inverse_depth"
        self.max_depth: float | None = None  # metrics' clip, from the settings (resolve_data)

    # -- data -----------------------------------------------------------------------------------------------------
    def resolve_data(self, args: Settings) -> DataInfo:
        path, spec = resolve_yaml_data(args, self.default_data, self.name, self.dataset_rules)
        self.max_depth = args.max_depth
        return DataInfo(
            ["depth"],
            3,
            (0.0, 0.0, 0.0),
            (1.0, 1.0, 1.0),
            source=str(path),
            extra={"spec": spec, "depth_scale": spec.get("depth_scale")},
        )

    def num_outputs(self, data: DataInfo) -> int:
        return 1

    def configure_model(self, config: dict[str, Any], data: DataInfo, args: Settings) -> None:
        super().configure_model(config, data, args)
        head = config["head"] if isinstance(config["head"], dict) else {"name": config["head"]}
        config["head"] = {**head, "output": "log_depth" if args.depth_mode == "metric" else "inverse_depth"}

    def build_dataset(self, data: DataInfo, split: str, imgsz: int, train: bool, args: Settings):
        files = split_files(data, split, train, args, self.dataset_rules)
        aug = joint_augment_args(args)
        if args.depth_mode == "metric":
            aug["scale"] = 0.0  # zooming makes things look nearer without changing their depth
        return DepthDataset(files, imgsz, train, aug, data.extra["depth_scale"], args.verbose)

    # -- model-bound pieces -----------------------------------------------------------------------------------------
    def bind(self, model) -> None:
        head = getattr(model, "head", None)
        if head is not None:
            self.values = DepthOutput.of(head)
            self.kind = self.values.kind
        else:  # an exported file outputs values already; its metadata says which
            self.values = None
            self.kind = ((getattr(model, "meta", None) or {}).get("metadata") or {}).get(
                "depth_output", "inverse_depth"
            )

    def depth_values(self, outputs) -> torch.Tensor:
        """(B, H, W) values at the network resolution: metres or relative inverse depth (``self.kind``)."""
        return self.values(outputs) if self.values is not None else outputs.float()

    def loss(self, outputs, batch: dict[str, Any], args: Settings):
        raw = outputs[:, 0].float()
        if getattr(self.values, "output", "inverse_depth") == "log_depth":
            return metric_loss(raw, batch["depth"], float(args.grad_weight))
        return relative_loss(raw, batch["depth"], float(args.grad_weight))

    def new_metrics(self, names: list[str]) -> DepthMetrics:
        return DepthMetrics(self.to_original, lambda: self.kind, self.max_depth)

    def to_original(self, outputs, metas: list[dict]) -> list[np.ndarray]:
        """Values per image at its original size (padding cropped, bilinear resize: a prediction is smooth)."""
        values = self.depth_values(outputs)
        maps = []
        for v, meta in zip(values, metas):
            rows, cols = content_box(meta["shape"], meta["scale"], meta["pad"])
            crop = v[rows, cols][None, None]
            size = tuple(int(s) for s in meta["shape"])
            maps.append(F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy())
        return maps

    # -- calibration ---------------------------------------------------------------------------------------------
    def calibrate(self, model, args: Settings) -> dict[str, Any]:
        """Fit one scale and shift (inverse-depth space, closed form, over every valid pixel of the split) that turns
        a relative model's output into metres; store it in the checkpoint and print the metrics before and after."""
        from visionkit.models.checkpoint import save_checkpoint

        ckpt = model.ckpt
        if ckpt is None or not str(model.ckpt_path).endswith(".pt"):
            raise UsageError("calibrate needs a trained .pt checkpoint: model=runs/depth/train/weights/best.pt")
        head = ckpt["model_config"]["head"]
        if head.get("output") == "log_depth":
            raise UsageError(
                "this model was trained with depth_mode=metric and already predicts metres; calibrate "
                "applies to relative models"
            )
        args = args.replace(data=args.data or ckpt.get("train_args", {}).get("data"))
        net = model.net
        uncalibrated = {**head, "calibration": None}
        net.head.calibration = None
        self.bind(net)
        data, loader, device = model.split_loader(args)  # the engine's loader, reached through the API that called
        preds, gts = [], []
        net.to(device).eval()
        with torch.no_grad():
            for raw in loader:
                batch = self.preprocess_batch(raw, device)
                preds += self.to_original(net(batch["img"]), batch["meta"])
                gts += [m["gt"] for m in batch["meta"]]
        p = np.concatenate([v[g > 0].ravel() for v, g in zip(preds, gts)]).astype(np.float64)
        t = np.concatenate([1.0 / g[g > 0].ravel() for g in gts]).astype(np.float64)
        (scale, shift), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), t, rcond=None)
        cap = args.max_depth
        before = [score_image(v, g, "inverse_depth", cap) for v, g in zip(preds, gts)]
        metres = [1.0 / np.clip(v * scale + shift, 1e-6, None) for v in preds]
        after = [score_image(m, g, "metres", cap) for m, g in zip(metres, gts)]
        summary = {
            k: (float(np.mean([b[k] for b in before])), float(np.mean([a[k] for a in after])))
            for k in ("delta1", "abs_rel", "rmse")
        }
        ckpt["model_config"]["head"] = {**uncalibrated, "calibration": [float(scale), float(shift)]}
        ckpt["calibration"] = {
            "scale": float(scale),
            "shift": float(shift),
            "space": "inverse depth",
            "data": data.source,
            "split": args.split,
            "images": len(preds),
        }
        save_checkpoint(ckpt, model.ckpt_path)
        model.config = dict(ckpt["model_config"])
        model._net = None
        if args.verbose:
            print(
                f"calibrated on {len(preds)} image(s) of {data.source}: metres = 1 / ({scale:.6g} · output + "
                f"{shift:.6g}); saved in {model.ckpt_path}"
            )
            print(f"{'metric':<10} {'before (per-image aligned)':>28} {'after (calibrated, not aligned)':>32}")
            for k, (b, a) in summary.items():
                print(f"{k:<10} {b:>28.4f} {a:>32.4f}")
        return {"scale": float(scale), "shift": float(shift), "metrics": summary}

    # -- prediction ----------------------------------------------------------------------------------------------
    def postprocess(self, outputs, context: list, args: Settings, names: list[str]) -> list[dict]:
        unit = "metres" if self.kind == "metres" else "relative inverse depth"
        results = []
        for values in self.to_original(outputs, context):
            h, w = values.shape
            results.append(
                {
                    "width": int(w),
                    "height": int(h),
                    "unit": unit,
                    "min": round(float(values.min()), 6),
                    "median": round(float(np.median(values)), 6),
                    "max": round(float(values.max()), 6),
                    "_depth": values.astype(np.float32),
                }
            )
        return results

    def describe(self, result: dict) -> str:
        return f"{result['unit']}: min {result['min']:.4g}, median {result['median']:.4g}, max {result['max']:.4g}"

    def _nearness(self, values: np.ndarray) -> np.ndarray:
        """0..1 with 1 = nearest, for colouring (inverse depth is already larger when nearer)."""
        near = 1.0 / np.clip(values, 1e-6, None) if self.kind == "metres" else values
        lo, hi = np.percentile(near, (1, 99))
        return np.clip((near - lo) / max(hi - lo, 1e-9), 0, 1)

    def annotate(self, item, result: dict, channels: int):
        """The depth map in colour (warm = near) beside the image, with a legend."""
        img = read_bgr(item)
        values = result["_depth"]
        colour = cv2.applyColorMap((self._nearness(values) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        h, w = colour.shape[:2]
        bar = cv2.applyColorMap(np.linspace(255, 0, h, dtype=np.uint8)[:, None].repeat(14, 1), cv2.COLORMAP_INFERNO)
        legend = np.full((h, 110, 3), 255, np.uint8)
        legend[:, :14] = bar
        near, far = ("near", "far") if self.kind != "metres" else (f"{result['min']:.2f} m", f"{result['max']:.2f} m")
        for y, text in ((14, near), (h - 6, far)):
            cv2.putText(legend, text, (18, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        return np.concatenate([img, colour, legend], 1)

    def save_result(self, item, result: dict, save_dir: Path, stem: str, args: Settings) -> None:
        values = result["_depth"]
        if args.save_depth:
            folder = save_dir / "depth"
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{stem}.npy", values)
            if self.kind == "metres":  # millimetres, as depth_scale: 1000 reads them back
                png = np.clip(np.round(values * 1000), 0, 65535).astype(np.uint16)
            else:  # relative: the range stretched to 16 bits
                png = (self._nearness(values) * 65535).astype(np.uint16)
            cv2.imwrite(str(folder / f"{stem}.png"), png)
        if args.save_ply:
            folder = save_dir / "depth"
            folder.mkdir(exist_ok=True)
            depth = values if self.kind == "metres" else 1.0 / np.clip(values - values.min() + 1e-3, 1e-6, None)
            write_ply(folder / f"{stem}.ply", depth, read_bgr(item), float(args.fov))

    def export_wrapper(self, net, args: Settings):
        if getattr(net, "head", None) is None:
            raise CheckpointError("only a PyTorch depth checkpoint can be exported")
        return DepthExport(net)

    def edge_graph(self, net, inputs, size, args: Settings):
        from visionkit.export.graphs import ValueMapGraph

        values = self.export_wrapper(net, args).values
        graph = ValueMapGraph(net, inputs, values)
        graph.metadata = {"depth_output": values.kind}
        return graph


def write_ply(path: Path, depth: np.ndarray, bgr: np.ndarray, fov_degrees: float, step: int = 1) -> Path:
    """A coloured point cloud (ASCII PLY) from a depth map in metres and a pinhole camera with the given horizontal
    field of view (principal point at the centre). Pixels without depth are left out."""
    h, w = depth.shape
    if bgr.shape[:2] != (h, w):
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    f = 0.5 * w / math.tan(math.radians(fov_degrees) / 2)
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    z = depth[ys, xs]
    keep = np.isfinite(z) & (z > 0)
    z, xs, ys = z[keep], xs[keep], ys[keep]
    x, y = (xs - (w - 1) / 2) * z / f, -(ys - (h - 1) / 2) * z / f  # y up, as viewers expect
    rgb = bgr[ys, xs][:, ::-1]
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {len(z)}\nproperty float x\nproperty float y\n"
        f"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header"
    )
    rows = np.column_stack([x, y, -z, rgb]).astype(np.float64)  # the camera looks down -z, as viewers expect
    np.savetxt(path, rows, fmt="%.4f %.4f %.4f %d %d %d", header=header, comments="")
    return path

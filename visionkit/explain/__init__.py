"""See what the model sees: class activation maps (Grad-CAM, Grad-CAM++, EigenCAM, Score-CAM) for every task, and a
gallery of a classifier's most confident mistakes. Built on the Python API and the grad-cam library
(``pip install 'visionkit[explain]'``)::

    from visionkit.explain import explain, gallery
    results = explain("runs/classify/train/weights/best.pt", source="images/", method="gradcam")
    results[0]["explanations"][0]["_cam"]      # (H, W) float32 in 0..1 at the image's size

Command line: ``visionkit TASK explain model=best.pt source=... [method= layer= target=]`` and
``visionkit classify val model=best.pt gallery=True`` (or gallery=N). docs/explain.md says what each map means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import torch
from tqdm import tqdm

from visionkit.api import Model
from visionkit.errors import UsageError
from visionkit.explain.cam import METHODS, compute_cam, find_layer, overlay, spatial_layers, to_original
from visionkit.explain.targets import EXPLAINERS, Explainer, Target, explainer, explainer_for

__all__ = ["explain", "gallery", "explainer", "Explainer", "Target", "METHODS", "EXPLAINERS", "EXPLAIN_KEYS"]

# keys of `explain` beyond the shared settings: key → (default, comment)
EXPLAIN_KEYS: dict[str, tuple[Any, str]] = {
    "method": ("gradcam", f"explain: {', '.join(METHODS)}"),
    "layer": (None, "explain: module path of the feature map (e.g. backbone.stages.2); null = the task's last one"),
    "target": (None, "explain: classify/segment a class name or id; detect a box index or class; depth x1,y1,x2,y2"),
}


def split_explain_keys(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(explain's own keys with their defaults, the rest)."""
    opts = {k: overrides.get(k, default) for k, (default, _) in EXPLAIN_KEYS.items()}
    return opts, {k: v for k, v in overrides.items() if k not in EXPLAIN_KEYS}


def _model(model: Model | str | Path) -> Model:
    model = model if isinstance(model, Model) else Model(str(model))
    if model.ckpt_path is None or model.ckpt_path.suffix != ".pt":
        raise UsageError(
            f"explain needs a trained .pt checkpoint (gradients flow through the PyTorch network); got "
            f"'{model.ckpt_path or model.label}'"
        )
    return model


def explain(model: Model | str | Path, source=None, **overrides) -> list[dict]:
    """Heat maps of what drove each prediction on ``source`` (image, folder or glob); writes one overlay per image
    and target into runs/TASK/explain*/ and returns, per image, ``{"image", "method", "layer", "explanations":
    [{"target", "score", "overlay", "_cam"}]}`` where ``_cam`` is an (H, W) float32 map in 0..1 at the image's
    size (1 = strongest evidence)."""
    from visionkit.engine.predictor import is_video, resolve_sources
    from visionkit.engine.utils import make_run_dir
    from visionkit.tasks.shared import read_bgr

    model = _model(model)
    opts, rest = split_explain_keys(overrides)
    if opts["method"] not in METHODS:
        from visionkit.explain.cam import cam_class

        cam_class(opts["method"])  # raises with the list and a did-you-mean
    args, meta, device, task = model._prediction_setup(rest)
    source = source if source is not None else args.source
    if source is None:
        raise UsageError("explain needs source= (an image, a folder or a glob)")
    files = [p for p in resolve_sources(source) if not (isinstance(p, Path) and is_video(p))]
    if not files:
        raise UsageError(f"source={source!r} holds no images (videos are not explained frame by frame)")
    net = model.net.to(device).eval()
    adapter = explainer_for(model.task_name)
    wrapped = adapter.wrap(net)
    names = meta["names"]
    save_dir = make_run_dir(args, model.task_name, "explain")
    layer_name, layer, results = None, None, []
    for item in tqdm(files, desc="explain", disable=not args.verbose, leave=False):
        x, context = task.load_inputs([item], meta["imgsz"], meta["in_channels"], meta["mean"], meta["std"], False)
        x = x.to(device)
        if layer is None:  # the same network for every image: find the layer once
            spatial = spatial_layers(net, x)
            layer_name = opts["layer"] or adapter.default_layer(spatial, int(model.config.get("num_classes", 0)))
            layer = find_layer(net, str(layer_name), spatial)
        with torch.no_grad():
            prediction = task.postprocess(net(x), context, args, names)[0]
            output = wrapped(x)
        image = read_bgr(item)
        stem = Path(str(item)).stem
        explanations = []
        for n, target in enumerate(adapter.targets(output, prediction, opts["target"], names, context[0])):
            cam = to_original(compute_cam(opts["method"], wrapped, layer, x, target.score), context[0], image.shape[:2])
            path = save_dir / f"{stem}_{opts['method']}{f'_{n}' if n else ''}.jpg"
            cv2.imwrite(str(path), overlay(image, cam))
            explanations.append(
                {"target": target.label, "score": round(target.value, 5), "overlay": str(path), "_cam": cam}
            )
        if args.verbose:
            listed = ", ".join(f"{e['target']} ({e['score']:.3f})" for e in explanations) or "nothing detected"
            print(f"{item}: {opts['method']} at {layer_name}: {listed}")
        results.append(
            {"image": str(item), "method": opts["method"], "layer": layer_name, "explanations": explanations}
        )
    model.save_dir = save_dir
    return results


def gallery(model: Model | str | Path, count: int = 16, **overrides) -> Path | None:
    """A grid of the ``count`` most confident mistakes of a classifier on its validation split (image, true and
    predicted class, score, Grad-CAM of the predicted class) as gallery.png; None when there are no mistakes."""
    from visionkit.explain.gallery import write_gallery

    return write_gallery(_model(model), count, overrides)

"""See what the model sees: class activation maps (Grad-CAM, Grad-CAM++, EigenCAM, Score-CAM) and LIME (the
superpixels that raise the score, found by perturbing the image) for every task, and a gallery of a classifier's
most confident mistakes. Built on the Python API and, for the CAMs, the grad-cam library
(``pip install 'visionkit[explain]'``)::

    from visionkit.explain import explain, gallery
    results = explain("runs/classify/train/weights/best.pt", source="images/", method="gradcam")
    results[0]["explanations"][0]["_cam"]      # (H, W) float32 in 0..1 at the image's size

Command line: ``visionkit TASK explain model=best.pt source=... [method= layer= target= lime_samples= ...]`` and
``visionkit classify val model=best.pt gallery=True`` (or gallery=N). docs/explain.md says what each map means.
This module imports nothing heavy until a function runs, so the CLI can check explain's keys at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import DataError, UsageError
from visionkit.explain.keys import (
    CAM_METHODS,
    EXPLAIN_KEYS,
    GALLERY_DEFAULT,
    LIME,
    METHODS,
    TARGET_FREE,
    check_method,
    gallery_count,
    split_explain_keys,
)

if TYPE_CHECKING:
    from visionkit.api import Model

__all__ = [
    "explain",
    "gallery",
    "Explainer",
    "Target",
    "METHODS",
    "CAM_METHODS",
    "LIME",
    "EXPLAIN_KEYS",
    "GALLERY_DEFAULT",
    "check_method",
    "gallery_count",
    "split_explain_keys",
]

_LAZY = {"Explainer", "Target"}  # the facet base (visionkit.tasks.explain_base), which imports torch


def __getattr__(name: str):
    if name in _LAZY:
        from visionkit.tasks import explain_base

        return getattr(explain_base, name)
    raise AttributeError(f"module 'visionkit.explain' has no attribute '{name}'")


def load_model(model: Model | str | Path) -> Model:
    """``model`` as a Model with PyTorch weights; exported files and untrained presets are refused."""
    from visionkit.api import Model

    model = model if isinstance(model, Model) else Model(str(model))
    if model.ckpt_path is None or model.ckpt_path.suffix != ".pt":
        raise UsageError(
            f"explain needs a trained .pt checkpoint (the maps follow gradients and activations inside the PyTorch "
            f"network, which an exported file does not have); got '{model.ckpt_path or model.label}'"
        )
    return model


def _images(source) -> list[tuple[str, Any]]:
    """(name, image path or BGR array) per image of ``source``; videos and webcams are refused."""
    import numpy as np

    from visionkit.engine.predictor import is_video, resolve_sources

    if source is None:
        raise UsageError("explain needs source= (an image, a folder, a glob, or a list of them)")
    items = []
    for k, src in enumerate(resolve_sources(source)):
        if isinstance(src, int) or (isinstance(src, Path) and is_video(src)):
            raise DataError(
                f"explain takes images; '{src}' is a {'webcam' if isinstance(src, int) else 'video'} (save the "
                f"frames you want explained as images)"
            )
        if isinstance(src, np.ndarray):
            src = src if src.ndim == 3 else np.repeat(src[..., None], 3, 2)  # grey → BGR, as predict does
            items.append((f"array{k}", src))
        else:
            items.append((str(src), src))
    return items


def _unique_stem(name: str, item, used: set[str]) -> str:
    """The image's file stem, made unique within the run (val/cat/1.jpg and val/dog/1.jpg are two images)."""
    stem = Path(name).stem if isinstance(item, Path) else name
    unique, n = stem, 2
    while unique in used:
        unique, n = f"{stem}-{n}", n + 1
    used.add(unique)
    return unique


def explain(model: Model | str | Path, source=None, **overrides) -> list[dict]:
    """Class activation maps or LIME explanations of what drove each prediction on ``source`` (an image, folder,
    glob, BGR array or a list of them), one overlay per image and target written to a new runs/TASK/explain*/
    folder (also explanations.json). ``overrides``: method, layer, target, lime_samples, lime_segments, lime_top,
    lime_fill, and any predict setting (imgsz, conf, device, seed, ...).

    Returns, per image, ``{"image", "method", "layer", "explanations": [{"target", "score", "layer", "overlay",
    "_cam"}]}``: ``_cam`` is an (H, W) float32 map in 0..1 at the image's own size (1 = strongest evidence in that
    image), ``score`` the target's value at the prediction (a probability, a box score, a pixel fraction, a mean
    depth); the image's ``layer`` is layer= or the task's default, a target's the one its map was taken at (None for
    LIME, which reads no layer). LIME's explanations also hold ``regions`` (the top superpixels, largest weight
    first: ``{"superpixel", "weight"}``), ``fit`` (the weighted R² of its linear model) and ``_superpixels`` (the
    (H, W) superpixel labels)."""
    import cv2
    import torch
    from tqdm import tqdm

    from visionkit.engine.utils import make_run_dir
    from visionkit.explain.overlay import overlay
    from visionkit.explain.targets import explainer_for
    from visionkit.tasks.shared import read_bgr

    opts, rest = split_explain_keys(overrides)
    method = opts["method"]
    if method in CAM_METHODS:
        from visionkit.explain.cam import grad_cam_library

        grad_cam_library()  # a missing extra fails before any work
    model = load_model(model)
    adapter = explainer_for(model.task)
    args, meta, device, task = model._prediction_setup(rest)
    names = meta["names"]
    adapter.check_target(opts["target"], names)
    items = _images(source if source is not None else args.source)
    net = model.net.to(device).eval()
    wrapped = adapter.wrap(net, task)
    save_dir = make_run_dir(args, model.task_name, "explain")
    layer_name, setup, results, used = None, None, [], set()
    for name, item in tqdm(items, desc="explain", disable=not args.verbose, leave=False):
        # one image at a time and never rect: the CAM library explains a batch of one, and a square input makes
        # every image's map the same shape
        x, context = task.load_inputs([item], meta["imgsz"], meta["in_channels"], meta["mean"], meta["std"], False)
        x = x.to(device)
        if setup is None:  # the same network for every image: find its layers once
            setup = _first_image_setup(net, x, adapter, opts["layer"], model, method)
            layer_name = opts["layer"] or setup[1]
        with torch.no_grad():
            prediction = task.postprocess(net(x), context, args, names)[0]
            output = wrapped(x)
        image = read_bgr(item)
        stem = _unique_stem(name, item, used)
        targets = adapter.targets(output, prediction, opts["target"], names, context[0])
        if method == LIME:
            explanations = _lime_explanations(image, targets, task, wrapped, meta, device, opts, int(args.seed))
        else:
            explanations = _cam_explanations(
                method, image, targets, wrapped, x, context[0], net, setup[0], opts, layer_name
            )
        for n, e in enumerate(explanations):
            path = save_dir / f"{stem}_{method}{f'_{n}' if n else ''}.jpg"
            cv2.imwrite(str(path), e.pop("_picture") if "_picture" in e else overlay(image, e["_cam"]))
            e["overlay"] = str(path)
        if args.verbose:
            listed = ", ".join(
                f"{e['target']} ({e['score']:.3f})"
                + (f" at {e['layer']}" if e["layer"] else f", fit R² {e['fit']:.2f}" if "fit" in e else "")
                + (" (blank: no positive evidence there)" if e["_cam"].max() == 0 else "")
                for e in explanations
            )
            tqdm.write(f"{name}: {method}: {listed or 'nothing to explain'}")
        results.append({"image": name, "method": method, "layer": layer_name, "explanations": explanations})
    public = [
        {**r, "explanations": [{k: v for k, v in e.items() if not k.startswith("_")} for e in r["explanations"]]}
        for r in results
    ]  # "_" keys are arrays, as in predictions.json
    (save_dir / "explanations.json").write_text(json.dumps(public, indent=1))
    model.save_dir = save_dir
    return results


def _first_image_setup(net, x, adapter, layer: str | None, model, method: str) -> tuple[list, str | None]:
    """(the network's spatial layers, the default layer) for a CAM method, checking layer=; LIME needs neither."""
    if method == LIME:
        return [], None
    from visionkit.explain.cam import find_layer, spatial_layers

    spatial = spatial_layers(net, x)
    default = adapter.default_layer(spatial, int(model.config.get("num_classes", 0)))
    find_layer(net, str(layer or default), spatial)  # a wrong layer= fails here, listing the spatial ones
    adapter.prepare(net, x)
    return spatial, default


def _cam_explanations(method, image, targets, wrapped, x, context, net, spatial, opts, layer_name) -> list[dict]:
    """One CAM per target (per image for a target-free method), back at the image's size."""
    from visionkit.explain.cam import compute_cam, find_layer
    from visionkit.explain.overlay import to_original

    explanations, shared = [], None
    free = method in TARGET_FREE
    for target in targets:
        # layer= wins; else the adapter's choice for this target (a detector's box level); else the default.
        # A target-free method has one map per image, at the default layer.
        used_layer = opts["layer"] or (None if free else target.layer) or layer_name
        if shared is None or not free:
            layer = find_layer(net, str(used_layer), spatial)
            raw = compute_cam(method, wrapped, layer, x, target.score)
            shared = to_original(raw, context, image.shape[:2])
        explanations.append(
            {"target": target.label, "score": round(target.value, 6), "layer": used_layer, "_cam": shared}
        )
    return explanations


def _lime_explanations(image, targets, task, wrapped, meta, device, opts, seed: int) -> list[dict]:
    """LIME for every target of one image at once: the superpixels are cut once, and each perturbed copy goes
    through the network once and is scored for every target (by the facet's ``Target.lime()``)."""
    import numpy as np
    import torch

    from visionkit.explain.lime import lime, region_overlay, slic, weight_map

    if not targets:
        return []
    scorers = [t.lime() for t in targets]

    def score(images: list) -> np.ndarray:
        x, _ = task.load_inputs(images, meta["imgsz"], meta["in_channels"], meta["mean"], meta["std"], False)
        with torch.no_grad():
            out = wrapped(x.to(device))
            return torch.stack([torch.stack([f(o).float() for f in scorers]) for o in out]).cpu().numpy()

    segments = slic(image, opts["lime_segments"])
    fitted = lime(image, segments, score, opts["lime_samples"], opts["lime_top"], seed, opts["lime_fill"])
    return [
        {
            "target": target.label,
            "score": round(target.value, 6),
            "layer": None,
            "regions": [{"superpixel": k, "weight": round(float(r.weights[k]), 6)} for k in r.top],
            "fit": round(r.fit, 4),
            "_cam": weight_map(segments, r.weights),
            "_superpixels": segments,
            "_picture": region_overlay(image, segments, r.top),
        }
        for target, r in zip(targets, fitted)
    ]


def gallery(model: Model | str | Path, count: int | bool = GALLERY_DEFAULT, **overrides) -> Path | None:
    """A grid of the ``count`` most confident mistakes of a classifier on its validation split (each: the image, its
    explanation for the predicted class, true and predicted class, score) saved as gallery.png in the model's last
    run folder (a val run's) or a new one. ``overrides``: method (default gradcam; lime: the top superpixels, at
    lime_samples forward passes per tile), layer, lime_* and val settings (data, split, imgsz, ...).
    Returns the file, or None when there are no mistakes."""
    from visionkit.explain.gallery import write_gallery
    from visionkit.explain.keys import split_gallery_keys

    n = gallery_count(count)
    if n is None:
        raise UsageError(f"bad value count={count!r}: true ({GALLERY_DEFAULT} mistakes) or a positive number")
    opts, rest = split_gallery_keys(overrides)
    if opts["method"] in CAM_METHODS:
        from visionkit.explain.cam import grad_cam_library

        grad_cam_library()
    return write_gallery(load_model(model), n, rest, opts)

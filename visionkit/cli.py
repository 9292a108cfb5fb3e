"""``visionkit TASK MODE key=value ...``, ``visionkit models ...``, ``visionkit cfg``, ``visionkit version``.

The CLI only parses and calls the Python API (visionkit.api.Model).
"""

from __future__ import annotations

import difflib
import json
import os
import sys

from visionkit.errors import UsageError, VisionkitError

MODES = ("train", "val", "predict", "export", "lrfind", "explain")

USAGE = """usage:
  visionkit TASK MODE [key=value ...]     TASK: a registered task (`visionkit models task` lists them)
                                          MODE: train, val, predict, export, lrfind, explain, or the task's own (track)
  visionkit data import labelstudio src=export.json images=DIR out=datasets/NAME [config=label_config.xml]
  visionkit data import labelstudio src=http://host:8080 project=ID token=... out=datasets/NAME
  visionkit data import coco src=instances.json images=DIR out=datasets/NAME
  visionkit data export coco data=datasets/NAME/data.yaml out=DIR
  visionkit data check data=datasets/NAME/data.yaml     (exit code 1 when there are errors)
  visionkit serve labelstudio model=best.pt [port=9090]  a Label Studio ML backend that pre-labels tasks
  visionkit data stats data=datasets/NAME/data.yaml     (counts, box sizes, a mosaic PNG)
  visionkit models [KIND] [PATTERN]       list registered components (KIND: backbone, neck, head, task, model,
                                          tracker, logger, export_format, mediapipe_kind, runtime)
  visionkit pretrain data=FOLDER model=NAME method=simclr|byol|dino   self-supervised backbone (weights= takes it)
  visionkit benchmark model=best.pt [data=custom.yaml] [formats=pt,onnx,onnx-int8,mediapipe] [imgsz=320]
                                          size, metric and latency of each format side by side (benchmark.csv)
  visionkit models info model=NAME [imgsz=N]   parameters, FLOPs, per-layer shapes and receptive fields
  visionkit runs [project=runs]           list training runs (task, model, data, epochs, best metric, time, status)
  visionkit runs show NAME                one run: settings, final metrics, per-class table, time split, files
  visionkit runs compare A B [C ...] [out=compare.png]   settings that differ, metrics side by side, curves
  visionkit cfg                           print every key with its default
  visionkit version                       print versions

examples:
  visionkit classify train data=mnist model=mnist-tiny epochs=15 scheduler=onecycle
  visionkit classify val model=runs/classify/train/weights/best.pt
  visionkit classify predict model=runs/classify/train/weights/best.pt source=images/ save
  visionkit classify lrfind data=shapes model=cifar-dilated imgsz=64
  visionkit classify explain model=runs/classify/train/weights/best.pt source=images/ method=gradcam   (or lime)
  visionkit classify val model=runs/classify/train/weights/best.pt gallery=True   (most confident mistakes)
  visionkit detect track model=runs/detect/train/weights/best.pt source=clip.mp4 tracker=botsort save save_txt"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    head, rest = argv[0], argv[1:]
    if head == "version":
        return _version()
    if head == "cfg":
        return _cfg()
    if head == "models":
        return _models(rest)
    if head == "data":
        return _data(rest)
    if head == "serve":
        return _serve(rest)
    if head == "runs":
        return _runs(rest)
    if head == "pretrain":
        return _pretrain(rest)
    if head == "benchmark":
        return _benchmark(rest)
    if head in MODES:  # `visionkit export model=best.pt`: the task comes from the checkpoint
        return _run(None, head, rest)
    from visionkit.registry import REGISTRY

    tasks = tuple(REGISTRY.available("task"))  # built-ins and plugins alike
    if head not in tasks:
        commands = ("models", "cfg", "version", "data", "serve", "runs", "pretrain", "benchmark")
        close = difflib.get_close_matches(head, tasks + MODES + commands, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown command '{head}'.{hint} Run `visionkit help`.")
    modes = MODES + tuple(REGISTRY.get("task", head).modes)  # the common modes and the task's own
    if not rest or "=" in rest[0]:
        raise UsageError(f"missing MODE: visionkit {head} MODE key=value ... (MODE: {', '.join(modes)})")
    mode = rest[0]
    if mode not in modes:
        close = difflib.get_close_matches(mode, modes, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown mode '{mode}'.{hint} Modes of {head}: {', '.join(modes)}")
    return _run(head, mode, rest[1:])


def _run(task: str | None, mode: str, rest: list[str]) -> int:
    from visionkit.cfg import check_shared, parse_kv, resolve

    overrides = parse_kv(rest)
    explain_opts, gallery = {}, None
    if mode == "explain":  # explain's own keys (method, layer, target, lime_*) are not settings of other modes
        from visionkit.explain.keys import split_explain_keys

        explain_opts, overrides = split_explain_keys(overrides)  # a bad method fails here, before torch loads
    elif mode == "val" and "gallery" in overrides:
        from visionkit.explain.keys import gallery_count, split_gallery_keys

        gallery = gallery_count(overrides.pop("gallery"))  # None: gallery=false
        explain_opts, overrides = split_gallery_keys(overrides)  # the gallery's method= (and layer=, lime_*)
    check_shared(overrides)  # shared keys' values checked before torch is even imported
    if overrides.get("tracker") is not None:  # a tracker name or settings file, checked before a model loads
        from visionkit.track.config import load_tracker_settings

        load_tracker_settings(overrides["tracker"])
    if task is not None:  # the task's own keys too, and an unknown key gets its did-you-mean
        from visionkit.registry import REGISTRY

        resolve(overrides, REGISTRY.get("task", task).keys)

    from visionkit.api import Model, exported_backend

    model_spec = overrides.pop("model", None)
    if task is None and not model_spec:
        raise UsageError(f"`visionkit {mode}` needs model=PATH (a checkpoint that names its task)")
    onnx_kw = {}
    if exported_backend(model_spec) is not None:  # an exported file without visionkit metadata needs these
        onnx_kw = {"names": overrides.pop("names", None), "imgsz": overrides.get("imgsz")}
    model = Model(model_spec, task=task, **onnx_kw)
    if mode == "train":
        from visionkit.engine.launch import is_worker, launch, process_count

        nproc = process_count(overrides)
        if nproc > 1 and not is_worker():  # start the processes; each runs this command as a torchrun worker
            return launch(model.task_name, rest, nproc, overrides.get("project"))
    if mode == "predict":
        model.predict(**overrides)
    elif mode == "explain":
        from visionkit.explain import explain

        explain(model, **overrides, **explain_opts)
    elif gallery is not None:
        from visionkit.explain import gallery as write_gallery
        from visionkit.explain.gallery import check_gallery_model

        check_gallery_model(model)  # before minutes of validation
        model.val(**overrides)
        write_gallery(model, gallery, **overrides, **explain_opts)  # into the val run's folder
    else:
        getattr(model, mode)(**overrides)
    if getattr(model, "save_dir", None) is not None and os.environ.get("RANK", "0") == "0":
        print(f"results saved to {model.save_dir}")
    return 0


def _models(rest: list[str]) -> int:
    from visionkit import Model
    from visionkit.cfg import parse_kv
    from visionkit.registry import REGISTRY

    if rest and rest[0] == "info":
        kv = parse_kv(rest[1:])
        unknown = set(kv) - {"model", "imgsz", "task"}
        if unknown:
            raise UsageError(
                f"`visionkit models info` takes model=, imgsz= and task=; got {', '.join(sorted(unknown))}"
            )
        if "model" not in kv:
            raise UsageError("visionkit models info model=NAME [imgsz=N]")
        Model(str(kv["model"]), task=kv.get("task")).info(imgsz=kv.get("imgsz"))
        return 0
    kinds = REGISTRY.kinds
    kind, pattern = None, "*"
    if rest:
        if rest[0] in kinds or rest[0].rstrip("s") in kinds:
            kind = rest[0].rstrip("s") if rest[0] not in kinds else rest[0]
            pattern = rest[1] if len(rest) > 1 else "*"
        else:
            pattern = rest[0]
    for k in [kind] if kind else kinds:
        # family names (timm/...: over a thousand) are listed when a kind or a pattern is named, else summarised
        listed = kind is not None or pattern != "*"
        names = REGISTRY.available(k, pattern, families=listed)
        print(f"{k} ({len(names)}):")
        for n in names:
            doc = (REGISTRY.get(k, n).__doc__ or "").strip().splitlines()
            print(f"  {n:<24} {doc[0] if doc else ''}")
        if not listed:
            for fam in REGISTRY.families(k):
                count = len(fam.names())
                shown = f"{count} names: `visionkit models {k} '{fam.prefix}*'`" if count else "not installed"
                print(f"  {fam.prefix + '<name>':<24} {fam.doc} ({shown})")
    if REGISTRY.plugins_loaded or REGISTRY.plugins_failed:
        print(
            f"plugins: {', '.join(REGISTRY.plugins_loaded) or 'none'}"
            + "".join(f"; {p} FAILED ({e})" for p, e in REGISTRY.plugins_failed.items())
        )
    return 0


def _benchmark(rest: list[str]) -> int:
    from visionkit.benchmark import benchmark
    from visionkit.cfg import parse_kv

    overrides = {"verbose": True, **parse_kv(rest)}
    rows = benchmark(**overrides)
    return 1 if all(r["error"] for r in rows) else 0  # a failed format is in its row; none working is an error


def _pretrain(rest: list[str]) -> int:
    from visionkit.cfg import parse_kv
    from visionkit.pretrain import pretrain

    pretrain(**parse_kv(rest))
    return 0


def _data(rest: list[str]) -> int:
    from visionkit.cfg import parse_kv
    from visionkit.data.commands import COMMANDS

    words = [w for w in rest if "=" not in w][:2]
    name = " ".join(words[:2]) if words[:1] in (["import"], ["export"]) else " ".join(words[:1])
    if name not in COMMANDS:
        raise UsageError(
            f"unknown data command '{' '.join(words)}'; use one of: "
            f"{', '.join('visionkit data ' + c for c in COMMANDS)}"
        )
    overrides = parse_kv([w for w in rest if "=" in w or w not in words])
    result = COMMANDS[name](**overrides)
    if name == "check" and result["errors"]:
        return 1
    return 0


def _serve(rest: list[str]) -> int:
    from visionkit.cfg import parse_kv
    from visionkit.serve.commands import COMMANDS, RAW_KEYS

    words = [w for w in rest if "=" not in w]
    if len(words) != 1 or words[0] not in COMMANDS:
        raise UsageError(f"usage: visionkit serve {'|'.join(COMMANDS)} model=best.pt [key=value ...]")
    pairs = [w for w in rest if "=" in w]
    overrides = parse_kv(pairs)
    overrides.update({k: v for k, _, v in (w.partition("=") for w in pairs) if k in RAW_KEYS})  # as typed
    COMMANDS[words[0]](**overrides)
    return 0


def _runs(rest: list[str]) -> int:
    from visionkit.cfg import parse_kv
    from visionkit.runs import compare_runs, list_runs, show_run

    words = [w for w in rest if "=" not in w]
    kv = parse_kv([w for w in rest if "=" in w])
    allowed = {"project", "out"} if words[:1] == ["compare"] else {"project"}
    if set(kv) - allowed:
        raise UsageError(f"`visionkit runs` takes {', '.join(f'{k}=' for k in sorted(allowed))}; got {', '.join(kv)}")
    project = str(kv.get("project", "runs"))
    if not words:
        list_runs(project)
    elif words[0] == "show" and len(words) == 2:
        show_run(words[1], project)
    elif words[0] == "compare":
        compare_runs(*words[1:], project=project, out=kv.get("out"))
    else:
        raise UsageError(
            "usage: visionkit runs [project=DIR] | visionkit runs show NAME | visionkit runs compare A B [C ...]"
        )
    return 0


def _cfg() -> int:
    """Every shared key (cfg/default.yaml), then each task's own keys."""
    from visionkit.cfg import DEFAULT_CFG_PATH
    from visionkit.registry import REGISTRY

    print(DEFAULT_CFG_PATH.read_text().rstrip())
    for name in REGISTRY.available("task"):
        keys = REGISTRY.get("task", name).keys
        if keys:
            print(f"\n# --- {name}: keys of this task only " + "-" * max(0, 80 - len(name)))
            for key, (default, comment, *_) in keys.items():
                print(f"{f'{key}: {json.dumps(default)}':<23} # {comment}")  # JSON values are valid YAML
    return 0


def _version() -> int:
    import platform

    import torch
    import torchvision

    from visionkit.version import __version__

    print(
        f"visionkit {__version__}\ntorch {torch.__version__} (cuda available: {torch.cuda.is_available()})\n"
        f"torchvision {torchvision.__version__}\npython {platform.python_version()}"
    )
    return 0


def entrypoint() -> None:
    """Console script: errors a user can cause are printed without a traceback."""
    try:
        code = main()
    except VisionkitError as e:
        print(f"visionkit: error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()

"""The Python API. Everything the CLI does goes through here::

from visionkit import Model
m = Model("mnist-tiny")
m.train(data="mnist", epochs=3)
m.val()
m.predict("digits/")
Model("runs/classify/train/weights/best.pt").predict("img.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.cfg import resolve
from visionkit.engine.callbacks import Callbacks
from visionkit.errors import UsageError
from visionkit.limits import DEFAULT_IN_CHANNELS
from visionkit.models.build import build_model
from visionkit.models.checkpoint import load_checkpoint, model_from_checkpoint
from visionkit.registry import REGISTRY
from visionkit.yamlfile import read_yaml


def exported_backend(model) -> Any:
    """The registered backend (kind ``runtime``) that runs the file ``model`` names, by its suffix; None when no
    backend runs such files (a checkpoint, a preset name, a model YAML)."""
    suffix = Path(str(model)).suffix.lower()
    if not suffix:
        return None
    for name in REGISTRY.available("runtime"):
        backend = REGISTRY.get("runtime", name)
        if getattr(backend, "suffix", None) == suffix:
            return backend
    return None


class Model:
    """A model for one task: a preset name, a backbone name, a model YAML/dict, or a checkpoint path."""

    def __init__(
        self,
        model: str | Path | dict | None = None,
        task: str | None = None,
        names: list[str] | None = None,
        imgsz: int | None = None,
    ):
        """``names`` and ``imgsz`` are only for an ONNX or .tflite file exported by another tool (no visionkit
        metadata)."""
        self.callbacks = Callbacks()
        self.ckpt: dict | None = None
        self.ckpt_path: Path | None = None
        self.task_name = task
        self._net = None
        self.label = str(model) if isinstance(model, (str, Path)) else None  # what the user named, for messages
        if isinstance(model, dict):
            self.config = dict(model)
        elif model is None:
            if task is None:
                raise UsageError("Model() needs a model name/path or task=")
            self.config = self._from_name(self._task(task).default_model)
        elif str(model).endswith(".pt"):
            self.ckpt_path = Path(model)
            self.ckpt = load_checkpoint(model, task=task)
            self.config = dict(self.ckpt["model_config"])
        elif str(model).endswith((".yaml", ".yml")):
            path = Path(model)
            if not path.is_file():
                raise UsageError(f"model config '{path}' does not exist")
            self.config = read_yaml(path, "model config", UsageError)
            if not isinstance(self.config, dict):
                raise UsageError(f"model config '{path}' must hold a mapping (task, backbone, neck, head, ...)")
        elif (Backend := exported_backend(model)) is not None:  # an exported file: its backend runs it
            self._net = Backend(model, {"task": task, "names": names, "imgsz": imgsz})
            meta = self._net.meta
            self.ckpt_path = Path(model)
            self.ckpt = {**meta, "model_config": meta["model_config"] or {}}
            self.config = {"task": meta["task"], **(meta["model_config"] or {})}
        else:
            self.config = self._from_name(str(model))
        cfg_task = self.config.get("task")
        if task is not None and cfg_task is not None and cfg_task != task:
            named = model if model is not None else f"{self._task(task).default_model}' (the task's default_model"
            raise UsageError(
                f"model '{named}' is a {cfg_task} model, not {task}; pick a {task} model (`visionkit models model`)"
            )
        self.task_name = task or cfg_task
        if self.task_name is None:
            raise UsageError(f"model '{model}' does not say its task; pass task=")
        self.config["task"] = self.task_name

    # -- construction ---------------------------------------------------------------------------------------------
    def _from_name(self, name: str) -> dict:
        if REGISTRY.contains("model", name):
            config = REGISTRY.build("model", name)
            if self.task_name is not None and config.get("task") not in (None, self.task_name):
                # a preset of another task names a backbone: this task's neck and head on it, so a backbone
                # pretrained here (classify model=yolo-n) transfers exactly to the preset's own task
                bare = self._task(self.task_name).bare_model_config(config["backbone"])
                bare["in_channels"] = config.get("in_channels", 3)
                return bare
            return config
        if REGISTRY.contains("backbone", name):  # a bare backbone gets the task's default neck and head
            return self._task(self.task_name or _bare_backbone_task()).bare_model_config(name)
        if REGISTRY.family("backbone", name) is not None:
            REGISTRY.get("backbone", name)  # a family name (timm/...) misspelt: the family's close matches
        REGISTRY.get("model", name)  # raises with close matches
        raise AssertionError

    @staticmethod
    def _task(name: str):
        return REGISTRY.build("task", name)

    @property
    def task(self):
        return self._task(self.task_name)

    @property
    def names(self) -> list[str] | None:
        return self.ckpt["names"] if self.ckpt else None

    @property
    def net(self):
        """The torch module (weights from the checkpoint when there is one)."""
        if self._net is None:
            self._net = model_from_checkpoint(self.ckpt, self.ckpt_path) if self.ckpt else build_model(self.config)
        return self._net

    def add_callback(self, event: str, fn) -> None:
        """Call ``fn(trainer)`` on a training event (on_train_start, on_epoch_end, ...)."""
        self.callbacks.add(event, fn)

    def _args(self, overrides: dict[str, Any]) -> dict[str, Any]:
        args = resolve(overrides, self.task.keys)
        if isinstance(args.imgsz, list):
            raise UsageError(
                f"imgsz={','.join(map(str, args.imgsz))}: height,width applies to `export "
                f"format=mediapipe` (a fixed deployment input); train, val and predict take one size "
                f"(rect=True keeps the aspect ratio)"
            )
        cfg = self.config
        for part in ("backbone", "neck", "head"):
            if args[part]:
                cfg[part] = {"name": args[part]}
        if args.act:
            cfg["act"] = args.act
        if getattr(self._net, "fixed_size", False):
            args.rect = False  # a static ONNX file takes its square size only
        return args

    # -- modes ----------------------------------------------------------------------------------------------------
    def train(self, **overrides) -> dict[str, float]:
        """Train (or fine-tune from this checkpoint) and load the best weights into this Model."""
        from visionkit.engine.launch import is_worker, process_count
        from visionkit.engine.trainer import Trainer

        args = self._args(overrides)
        if process_count(args) > 1 and not is_worker():
            raise UsageError(
                f"device={args.device} nproc={args.nproc} asks for "
                f"{process_count(args)} training processes: run this script with `torchrun "
                f"--nproc-per-node={process_count(args)} script.py`, or train from the command line "
                f"(`visionkit {self.task_name} train device=...` starts them itself)"
            )
        init = self.ckpt["state_dict"] if self.ckpt and not args.resume else None
        if init is not None and not args.imgsz:
            args.imgsz = self.ckpt["imgsz"]
        norm = (self.ckpt["mean"], self.ckpt["std"]) if init is not None and self.ckpt.get("mean") else None
        trainer = Trainer(
            self.task, self.config, args, self.callbacks, init_state=init, explicit=set(overrides), init_norm=norm
        )
        metrics = trainer.train()
        best = trainer.weights_dir / "best.pt"
        self.ckpt_path = best if best.is_file() else trainer.weights_dir / "last.pt"
        self.ckpt = load_checkpoint(self.ckpt_path, task=self.task_name)
        self.config = dict(self.ckpt["model_config"])
        self._net = None
        self.trainer = trainer
        self.save_dir = trainer.save_dir
        return metrics

    def _require_ckpt(self, mode: str) -> dict:
        if self.ckpt is None:
            raise UsageError(f"{mode} needs trained weights: pass model=path/to/best.pt (or call train() first)")
        return self.ckpt

    def val(self, **overrides) -> dict[str, float]:
        """Validate the checkpoint on its dataset (or data=...); prints the table, saves plots."""
        from visionkit.engine.threads import use_threads
        from visionkit.engine.utils import make_run_dir
        from visionkit.engine.validator import validate

        args, data, loader, device = self.val_loader(**overrides)
        task = self.task
        task.bind(self.net)
        if args.verbose:
            print(self.cpu_plan.describe())
        with use_threads(self.cpu_plan.threads):
            metrics, obj = validate(self.net.to(device), loader, task, data.names, device, args)
        save_dir = make_run_dir(args, self.task_name, "val")
        if args.verbose:
            print(obj.table())
            print(
                f"speed per image: {metrics['ms_preprocess']:.2f} ms pre-process, {metrics['ms_inference']:.2f} ms "
                f"inference, {metrics['ms_postprocess']:.2f} ms post-process; plots in {save_dir}"
            )
        if args.plots:
            obj.plot(save_dir)
        obj.save(save_dir, args)
        self.save_dir = save_dir
        self.val_metrics = obj  # the metrics object (its table, plots and fitness_key)
        return metrics

    def val_loader(self, **overrides):
        """(settings, dataset info, loader, device) of the split ``val`` scores: data= or the data the checkpoint
        was trained on, found the same way, with the checkpoint's normalisation. Sets ``cpu_plan`` (the threads
        and loader workers chosen)."""
        ckpt = self._require_ckpt("val")
        args = self._args(overrides)
        if not args.data:  # validate on the data it was trained on, found the same way
            trained = ckpt.get("train_args", {})
            args.data = trained.get("data") or ckpt.get("data")
            for key in ("root", "datasets_dir"):
                if key not in overrides and trained.get(key) is not None:
                    args[key] = trained[key]
        return (args, *self.split_loader(args))

    def run_tracking(self, facet, args):
        """The tracking loop (visionkit.track.loop) over ``args.source`` with this model: what a task's ``track``
        mode calls with its facet (how to read boxes out of its results and write ids back)."""
        from visionkit.track.loop import run_tracking

        return run_tracking(self, self.task, args, facet)

    def split_loader(self, args):
        """(dataset info, loader, device) of ``args.split`` of ``args.data`` with the checkpoint's normalisation and
        size, in order: what a task's own mode (e.g. depth's calibrate) evaluates the checkpoint on."""
        from visionkit.engine.setup import make_loader
        from visionkit.engine.threads import plan_for
        from visionkit.engine.utils import select_device

        ckpt = self._require_ckpt("val")
        task = self.task
        data = task.resolve_data(args)
        if data.names != ckpt["names"]:
            raise UsageError(f"dataset classes {data.names} differ from the checkpoint's {ckpt['names']}")
        data.mean, data.std = tuple(ckpt["mean"]), tuple(ckpt["std"])
        device = select_device(args.device)
        self.cpu_plan = plan_for(args, device)
        ds = task.build_dataset(data, args.split, int(args.imgsz or ckpt["imgsz"]), False, args)
        loader = make_loader(ds, int(args.batch), self.cpu_plan.workers, False, device, task.collate_fn())
        return data, loader, device

    def predict(self, source=None, **overrides) -> list[dict]:
        """Predict on an image, folder or glob; returns one dict per image (also saved as predictions.json)."""
        from visionkit.engine.predictor import predict, resolve_sources
        from visionkit.engine.threads import use_threads
        from visionkit.engine.utils import make_run_dir

        args, meta, device, task = self._prediction_setup(overrides)
        source = source if source is not None else args.source
        resolve_sources(source)  # fail on a bad source before making a run folder
        save_dir = make_run_dir(args, self.task_name, "predict")
        self.save_dir = save_dir
        if args.verbose:
            print(self.cpu_plan.describe())
        with use_threads(self.cpu_plan.threads):
            return predict(self.net.to(device), task, source, meta, args, device, save_dir)

    def infer(self, images, **overrides) -> list[dict]:
        """Predict on decoded images (BGR uint8 arrays, as OpenCV reads them) or paths, and write nothing: for
        servers and notebooks. Returns what ``predict`` returns; arrays are named array0, array1, ..."""
        import numpy as np

        from visionkit.engine.predictor import predict
        from visionkit.engine.threads import use_threads

        if isinstance(images, (np.ndarray, str, Path)):  # one image, not a sequence of rows or characters
            images = [images]
        args, meta, device, task = self._prediction_setup({"verbose": False, **overrides, "save": False})
        with use_threads(self.cpu_plan.threads):
            return predict(self.net.to(device), task, list(images), meta, args, device, None)

    def _prediction_setup(self, overrides: dict[str, Any]):
        from visionkit.engine.threads import plan_for
        from visionkit.engine.utils import select_device

        ckpt = self._require_ckpt("predict")
        args = self._args(overrides)
        device = select_device(args.device)
        self.cpu_plan = plan_for(args.replace(workers=0), device)  # images are read in this process: no workers
        meta = {
            "names": ckpt["names"],
            "imgsz": int(args.imgsz or ckpt["imgsz"]),
            "in_channels": ckpt["in_channels"],
            "mean": ckpt["mean"],
            "std": ckpt["std"],
            "rect": bool(args.rect),
            "model_path": self.ckpt_path,
        }
        task = self.task
        task.bind(self.net)
        return args, meta, device, task

    def lrfind(self, **overrides) -> dict[str, Any]:
        """LR range test on the training data; saves lrfind.png and returns the suggested lr."""
        from visionkit.engine.lrfinder import lr_range_test, plot_lr_range
        from visionkit.engine.setup import make_loader, resolve_imgsz
        from visionkit.engine.threads import plan_for, use_threads
        from visionkit.engine.utils import init_seeds, make_run_dir, select_device

        args = self._args(overrides)
        init_seeds(int(args.seed))
        task = self.task
        data = task.resolve_data(args)
        if self.ckpt is None:
            task.configure_model(self.config, data, args)
        net = self.net
        imgsz = resolve_imgsz(args, self.config, data.native_imgsz, net.stride)
        device = select_device(args.device)
        self.cpu_plan = plan_for(args, device)
        ds = task.build_dataset(data, "train", imgsz, True, args)
        loader = make_loader(ds, int(args.batch), self.cpu_plan.workers, True, device, task.collate_fn())
        task.bind(net)
        with use_threads(self.cpu_plan.threads):
            result = lr_range_test(
                net, loader, task, device, args, float(args.start_lr), float(args.end_lr), int(args.num_iter)
            )
        save_dir = make_run_dir(args, self.task_name, "lrfind")
        result["plot"] = str(plot_lr_range(result, save_dir / "lrfind.png"))
        print(
            f"suggested lr0={result['suggested_lr']:.3g} (steepest descent; lowest loss at "
            f"{result['min_loss_lr']:.3g}); plot: {result['plot']}"
        )
        self.save_dir = save_dir
        return result

    def info(self, imgsz: int | None = None, verbose: bool = True) -> dict:
        """Parameters, FLOPs and the per-layer table (output shape, params, receptive field)."""
        from visionkit.models.info import format_info, model_info

        size = int(imgsz or (self.ckpt or {}).get("imgsz") or self.config.get("imgsz") or 224)
        info = model_info(self.net, size, int(self.config.get("in_channels", DEFAULT_IN_CHANNELS)))
        if verbose:
            parts = [
                self.config[k]["name"] if isinstance(self.config.get(k), dict) else self.config.get(k)
                for k in ("backbone", "neck", "head")
            ]
            print(format_info(info, str(self.ckpt_path or self.label or " + ".join(str(p) for p in parts if p))))
        return info

    def __getattr__(self, name: str):
        """A mode the task declares beyond the common ones (``Model("depth.pt").calibrate(data=...)``)."""
        if name.startswith("_") or "task_name" not in self.__dict__:
            raise AttributeError(name)
        task = self.task
        if name in task.modes:

            def mode(source=None, **overrides):
                if source is not None:  # Model(...).track("clip.mp4"), like predict
                    overrides["source"] = source
                return getattr(task, name)(self, self._args(overrides))

            return mode
        raise AttributeError(
            f"'Model' has no attribute '{name}' (task '{self.task_name}' modes: "
            f"{', '.join(task.modes) or 'none beyond the common ones'})"
        )

    def export(self, **overrides) -> Path:
        """Export the checkpoint next to it, checked against PyTorch; returns the file's path.

        format=onnx (onnxruntime): imgsz, batch (default 1), dynamic, half, opset, simplify, nms (detect),
        export_tol, int8 (also writes <name>_int8.onnx, calibrated on fraction= of data='s train split or on
        source=, and returns it). format=mediapipe (alias tflite; MediaPipe Tasks): imgsz (one size or h,w), half (fp16
        weights), int8 (calibrated on data=), nms (detect), source= or data= images for the check."""
        from visionkit.export.exporter import writer_for

        ckpt = self._require_ckpt("export")
        if getattr(self._net, "raw_outputs", True) is False:
            raise UsageError(f"'{self.ckpt_path}' is already an exported file; export a .pt checkpoint")
        without_size = {k: v for k, v in overrides.items() if k != "imgsz"}
        writer = writer_for(self._args(without_size).format)
        _check_writable(self.ckpt_path.parent, "the exported file (it is written next to the checkpoint)")
        args = self._args({**writer.defaults, **(without_size if writer.size_pair else overrides)})
        if writer.size_pair:
            args.imgsz = overrides.get("imgsz")  # one size or h,w: read by the writer
        path = writer.write(
            model_from_checkpoint(ckpt, self.ckpt_path),
            self.task,
            ckpt,
            args,
            self.ckpt_path.with_suffix(writer.suffix),
            self._score_file,
        )
        return self._exported(path)

    def _exported(self, path: Path) -> Path:
        """After an export: the run loggers that keep artifacts (MLflow) add the file to the checkpoint's run."""
        from visionkit.engine.loggers import exported

        exported(self.ckpt_path.parent.parent, [path])  # weights/best.pt → its run folder
        self.save_dir = path.parent
        return path

    def _score_file(self, path: Path, **overrides) -> tuple[dict[str, float], str]:
        """Validate an exported file of this model's task: (its metrics, the fitness key); for an exporter that
        reports what compressing a file cost."""
        m = Model(str(path), task=self.task_name)
        try:
            return m.val(**overrides), m.val_metrics.fitness_key
        finally:
            m.net.close()


def _bare_backbone_task() -> str:
    """The task a bare backbone name given without task= becomes: the one whose Task says ``bare_default``."""
    for name in REGISTRY.available("task"):
        if REGISTRY.get("task", name).bare_default:
            return name
    raise UsageError("a bare backbone needs task= (no registered task takes one by default)")


def _check_writable(folder: Path, what: str) -> None:
    """Fail before minutes of work when ``folder`` cannot take a new file (read-only, full, gone)."""
    import os
    import tempfile

    from visionkit.errors import CheckpointError

    try:
        fd, probe = tempfile.mkstemp(prefix=".visionkit-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(
            f"cannot write {what} in '{folder}': {e.strerror or e}; copy the checkpoint to a writable folder and "
            f"export from there"
        ) from e

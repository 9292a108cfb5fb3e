import csv

import pytest
import torch
import yaml

from tests.conftest import TINY
from visionkit import Model
from visionkit.cfg import resolve
from visionkit.errors import CheckpointError, UsageError


def _train(data, tmp_path, **kw):
    m = Model(kw.pop("model", "mnist-tiny"))
    args = {**TINY, "data": str(data), "project": str(tmp_path / "runs"), "epochs": 1, **kw}
    metrics = m.train(**args)
    return m, metrics


def test_train_writes_a_complete_run(classify_dir, tmp_path):
    m, metrics = _train(classify_dir, tmp_path, epochs=2, plots=True)
    run = tmp_path / "runs/classify/train"
    assert m.save_dir == run
    for f in ("args.yaml", "results.csv", "results.png", "confusion_matrix.png", "weights/best.pt", "weights/last.pt"):
        assert (run / f).is_file(), f
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert args["epochs"] == 2 and args["imgsz"] == 32 and args["data"] == str(classify_dir)
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"train_loss", "val_loss", "top1", "top5", "lr"} <= set(rows[0])
    assert 0 <= metrics["top1"] <= 1
    ckpt = torch.load(run / "weights/best.pt", weights_only=True)
    assert ckpt["task"] == "classify" and ckpt["names"] == ["circle", "square", "star", "triangle"]
    assert "train_state" not in ckpt and "train_state" in torch.load(run / "weights/last.pt", weights_only=True)
    # a second run never overwrites the first
    m2, _ = _train(classify_dir, tmp_path)
    assert m2.save_dir.name == "train2"


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "persistent-workers"])
def test_resume_matches_uninterrupted_run(classify_dir, tmp_path, workers):
    # workers=2: persistent workers live through the run and are reseeded every epoch, so a resumed run (new
    # workers) draws the same augmentation as the uninterrupted one
    common = {"epochs": 2, "deterministic": True, "seed": 3, "degrees": 10.0, "cutout": 0.5, "workers": workers}
    full, _ = _train(classify_dir, tmp_path / "a", **common)

    stopped = Model("mnist-tiny")
    stopped.add_callback("on_epoch_end", lambda t: setattr(t, "stop", True))
    stopped.train(**{**TINY, "data": str(classify_dir), "project": str(tmp_path / "b"), **common})
    last = stopped.save_dir / "weights/last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    resumed = Model("mnist-tiny")
    resumed.train(resume=str(last), verbose=False)
    a = torch.load(full.save_dir / "weights/last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert b["epoch"] == 1
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["train_state"]["model"]:
        assert torch.equal(a["train_state"]["model"][key], b["train_state"]["model"][key]), key


def test_resume_of_a_finished_run_is_refused(classify_dir, tmp_path):
    m, _ = _train(classify_dir, tmp_path)
    with pytest.raises(UsageError, match="already finished"):
        Model("mnist-tiny").train(resume=str(m.save_dir / "weights/last.pt"))
    with pytest.raises(CheckpointError, match="only last.pt"):
        Model("mnist-tiny").train(resume=str(m.save_dir / "weights/best.pt"))


def test_callbacks_fire_in_order_and_lr0_is_honoured(classify_dir, tmp_path):
    events = []
    m = Model("mnist-tiny")
    for ev in ("on_train_start", "on_epoch_start", "on_batch_end", "on_val_end", "on_epoch_end", "on_train_end"):
        m.add_callback(ev, lambda t, ev=ev: events.append(ev))
    seen = {}
    m.add_callback(
        "on_train_start",
        lambda t: seen.update(lr=t.optimizer.param_groups[0]["initial_lr"], opt=type(t.optimizer).__name__),
    )
    m.train(**TINY, data=str(classify_dir), project=str(tmp_path), epochs=1, lr0=0.0123)
    assert seen == {"lr": 0.0123, "opt": "AdamW"}
    assert events[0] == "on_train_start" and events[1] == "on_epoch_start" and events[-1] == "on_train_end"
    assert events.count("on_batch_end") == 2  # 16 images / batch 8
    assert events.index("on_val_end") < events.index("on_epoch_end")
    with pytest.raises(UsageError, match="Did you mean 'on_epoch_end'"):
        m.add_callback("on_epoch_ends", print)


@pytest.mark.parametrize("scheduler, optimizer", [("onecycle", "sgd"), ("linear", "adam"), ("constant", "adamw")])
def test_schedulers_and_optimizers(classify_dir, tmp_path, scheduler, optimizer):
    lrs = []
    m = Model("mnist-tiny")
    m.add_callback("on_batch_end", lambda t: lrs.append(t.optimizer.param_groups[0]["lr"]))
    m.train(
        **TINY,
        data=str(classify_dir),
        project=str(tmp_path),
        epochs=2,
        lr0=0.01,
        scheduler=scheduler,
        optimizer=optimizer,
        warmup_epochs=0.0,
    )
    assert len(lrs) == 4
    if scheduler == "onecycle":
        # rises to lr0, then anneals far below it (the lr after the very last step is never used)
        assert max(lrs) == pytest.approx(0.01) and min(lrs) < 1e-4 and lrs.index(max(lrs)) < lrs.index(min(lrs))
    elif scheduler == "linear":
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.01 * 0.01, rel=1e-6)
    else:
        assert lrs == [0.01] * 4


def test_early_stopping_and_save_period(classify_dir, tmp_path):
    epochs_run = []
    m = Model("mnist-tiny")
    m.add_callback("on_epoch_end", lambda t: epochs_run.append(t.epoch))
    # a constant fitness never improves after epoch 1, so patience=1 stops after epoch 2
    m.add_callback("on_val_end", lambda t: t.metrics.update(top1=0.5))
    m.train(**TINY, data=str(classify_dir), project=str(tmp_path), epochs=5, patience=1, save_period=1)
    assert epochs_run == [0, 1]
    assert (m.save_dir / "weights/epoch1.pt").is_file() and (m.save_dir / "weights/epoch2.pt").is_file()


def test_workers_and_cache(classify_dir, tmp_path):
    common = {"deterministic": True, "seed": 5, "degrees": 10.0}
    _, plain = _train(classify_dir, tmp_path / "a", **common)
    cached, with_cache = _train(classify_dir, tmp_path / "b", cache=True, **common)
    for key in ("top1", "top5", "val_loss"):  # the cache holds the same decoded images: the same run
        assert with_cache[key] == pytest.approx(plain[key], rel=1e-6), key
    ds = cached.trainer.train_set
    assert ds._cache is not None and len(ds._cache) == len(ds)
    workers, _ = _train(classify_dir, tmp_path / "c", workers=2, cache=True, **common)
    loader = workers.trainer.train_loader
    assert loader.num_workers == 2 and loader.persistent_workers


def test_bad_device_is_a_usage_error(classify_dir, tmp_path):
    with pytest.raises(UsageError, match="device"):
        _train(classify_dir, tmp_path, device="tpu")


def test_ram_cache_says_its_size_and_refuses_what_does_not_fit(classify_dir, tmp_path, monkeypatch, capsys):
    import visionkit.data.ram_cache as ram_cache
    from visionkit.errors import DataError

    _train(classify_dir, tmp_path / "ok", cache="ram")
    out = capsys.readouterr().out
    assert "caching 16 train images in RAM: about" in out and "GB available" in out
    monkeypatch.setattr(ram_cache, "available_bytes", lambda: 1000)  # a machine with 1 kB free
    with pytest.raises(DataError, match="cache=ram for .* needs about .* only 0.0 GB"):
        _train(classify_dir, tmp_path / "no", cache="ram")


def test_persistent_workers_restart_when_mosaic_closes(shapes_root, tmp_path):
    seen = []
    m = Model("yolo-n", task="detect")
    m.add_callback(
        "on_epoch_start",
        lambda t: seen.append((id(t.train_loader), t.train_loader.dataset.mosaic, t.train_loader.persistent_workers)),
    )
    m.train(
        **{
            **TINY,
            "data": str(shapes_root / "data.yaml"),
            "project": str(tmp_path),
            "epochs": 2,
            "imgsz": 64,
            "close_mosaic": 1,
            "workers": 1,
        }
    )
    (loader1, mosaic1, persistent), (loader2, mosaic2, _) = seen
    assert persistent and mosaic1 == 1.0 and mosaic2 == 0.0 and loader1 != loader2  # new workers see mosaic off


def test_checkpoint_writes_survive_faults(tmp_path, monkeypatch):
    import errno
    import os

    from visionkit.engine.utils import make_run_dir
    from visionkit.models.checkpoint import save_checkpoint

    path = tmp_path / "w" / "last.pt"
    save_checkpoint({"task": "classify", "epoch": 1}, path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the umask's mode, like every other output
    stale = path.with_name(".last.pt.k1ll3d.tmp")  # what a write killed before its rename leaves
    stale.write_bytes(b"half")

    def full_disk(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last.pt.*No space left"):
        save_checkpoint({"task": "classify", "epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1  # the previous file is whole
    assert not list(path.parent.glob(".*.tmp"))  # neither the stale nor the failed temporary file is left
    with pytest.raises(UsageError, match="cannot create the run folder .*shorter name="):
        make_run_dir(resolve({"project": str(tmp_path)}).replace(name="n" * 300), "classify", "train")


def test_the_same_seed_gives_the_same_weights_on_the_cpu(classify_dir, tmp_path):
    """A seed repeats on the same machine with the same threads, bit for bit, with augmentation on and without
    deterministic=True (what docs/course.md promises); another seed gives another run."""
    common = {"seed": 11, "threads": 2, "degrees": 10.0, "cutout": 0.5, "epochs": 2}
    a, ma = _train(classify_dir, tmp_path / "a", **common)
    b, mb = _train(classify_dir, tmp_path / "b", **common)
    c, _ = _train(classify_dir, tmp_path / "c", **{**common, "seed": 12})
    weights = [torch.load(m.save_dir / "weights/last.pt", weights_only=True)["state_dict"] for m in (a, b, c)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert ma["val_loss"] == mb["val_loss"]
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])

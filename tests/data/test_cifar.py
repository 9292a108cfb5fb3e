"""CIFAR-10 python batches: a generated tiny copy loads, a malicious pickle is refused, nothing downloads unasked."""

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY
from visionkit import Model
from visionkit.data import cifar
from visionkit.errors import DataError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(folder: Path, per_batch: int = 4, protocol: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """The seven files of cifar-10-batches-py with ``per_batch`` random images each, pickled like the originals."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in cifar.CIFAR10_FILES["train"] + cifar.CIFAR10_FILES["val"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            "batch_label": f"{name} of 5",
            "labels": labels,
            "data": data,
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = data
    meta = {"num_cases_per_batch": per_batch, "label_names": NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or torchvision download fails the test."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr("torchvision.datasets.CIFAR10", refuse)
    return calls


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_generated_batches_load_in_cifar_pixel_order(tmp_path, protocol):
    written = write_cifar(tmp_path / cifar.CIFAR10_SUBDIR, protocol=protocol)
    folder = cifar.find_cifar_dir([tmp_path])  # the folder above cifar-10-batches-py is enough
    assert folder == tmp_path / cifar.CIFAR10_SUBDIR
    assert cifar.load_names(folder) == NAMES
    images, labels = cifar.load_split(folder, "train", 10)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8 and labels.shape == (20,)
    # a row is 1024 red, 1024 green, 1024 blue values, each row-major over the 32×32 image
    row = written["data_batch_2"][1]
    assert images[5, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert images[5, 3, 7].tolist() == [row[3 * 32 + 7], row[1024 + 3 * 32 + 7], row[2048 + 3 * 32 + 7]]
    test_images, _ = cifar.load_split(folder, "val", 10)
    assert np.array_equal(test_images.transpose(0, 3, 1, 2).reshape(4, -1), written["test_batch"])


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func", ["os.system", "builtins.exec", "numpy.load"])
def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch, func):
    import builtins
    import os

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "c"
    write_cifar(folder)
    target = {"os.system": os.system, "builtins.exec": builtins.exec, "numpy.load": np.load}[func]
    payload = {"os.system": "touch PWNED", "builtins.exec": "open('PWNED', 'w').close()", "numpy.load": "PWNED"}[func]
    batch = {"labels": [0], "data": _Evil(target, payload)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(
        DataError,
        match=r"refused to load '.*data_batch_3'.*Python global '(posix|os|__builtin__|numpy)"
        r"\.(system|exec|load)'",
    ):
        cifar.load_split(folder, "train", 10)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_batch_is_a_data_error(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes((tmp_path / "test_batch").read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch' is not a CIFAR python batch"):
        cifar.load_split(tmp_path, "val", 10)


def test_missing_files_listed_and_nothing_downloaded(tmp_path, no_network):
    with pytest.raises(DataError) as e:
        Model("cifar-dilated").train(**TINY, data="cifar10", root=str(tmp_path / "empty"), project=str(tmp_path))
    msg = str(e.value)
    for name in ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]:
        assert name in msg
    assert "download=True" in msg and "cs.toronto.edu" in msg and str(tmp_path / "empty") in msg
    assert no_network == []
    # one file short: still an error, which names the missing one
    write_cifar(tmp_path / "partial")
    (tmp_path / "partial" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="Found some but not data_batch_4"):
        Model("cifar-dilated").train(**TINY, data="cifar10", root=str(tmp_path / "partial"), project=str(tmp_path))


def test_download_true_goes_through_torchvision_then_trains(tmp_path, monkeypatch):
    calls = []

    def fake_cifar10(root, train=True, download=False, **kw):  # stands in for torchvision's, without the network
        calls.append((root, download))
        write_cifar(Path(root) / cifar.CIFAR10_SUBDIR, per_batch=6)

    monkeypatch.setattr("torchvision.datasets.CIFAR10", fake_cifar10)
    root = tmp_path / "cifar"
    m = Model("cifar-dilated")
    metrics = m.train(**TINY, data="cifar10", root=str(root), download=True, project=str(tmp_path), epochs=1)
    assert calls == [(str(root), True)]
    assert m.ckpt["names"] == NAMES and m.ckpt["imgsz"] == 32
    assert m.ckpt["mean"] == pytest.approx(list(cifar.CIFAR10_MEAN))
    # found on disk now: validation (data and root from the training args) neither downloads nor fails
    again = m.val(project=str(tmp_path / "val"), verbose=False, plots=False)
    assert calls == [(str(root), True)] and again["top1"] == pytest.approx(metrics["top1"])

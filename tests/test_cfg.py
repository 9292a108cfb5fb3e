import pytest
import torch

from tests.conftest import run_cli
from visionkit.cfg import load_defaults, parse_kv, parse_value, resolve
from visionkit.errors import UsageError


def test_values_are_typed():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.5") == 0.5
    assert parse_value("1e-3") == 0.001
    assert parse_value("True") is True and parse_value("false") is False
    assert parse_value("None") is None and parse_value("null") is None
    assert parse_value("[8, 16, 32]") == [8, 16, 32]
    assert parse_value("runs/x.pt") == "runs/x.pt"
    assert parse_value("0,1") == "0,1"


def test_bare_key_means_true():
    assert parse_kv(["save", "epochs=3"]) == {"save": True, "epochs": 3}


def test_every_key_has_a_comment():
    text = open("visionkit/cfg/default.yaml").read()
    for key in load_defaults():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{key}:"))
        assert "#" in line, f"{key} has no comment"


def test_unknown_key_suggests():
    with pytest.raises(UsageError, match="unknown argument 'epoch'. Did you mean 'epochs'"):
        resolve({"epoch": 3})


@pytest.mark.parametrize("kv, msg", [({"epochs": 2.5}, "expected an integer"),
                                     ({"amp": 3}, "true, false or one of bf16, fp16"),
                                     ({"amp": "fp32"}, "amp='fp32'"), ({"plots": 3}, "true or false"),
                                     ({"optimizer": "adamm"}, "Did you mean 'adam'"), ({"lrf": "x"}, "a number")])
def test_bad_values(kv, msg):
    with pytest.raises(UsageError, match=msg):
        resolve(kv)


def test_precedence_cli_over_file_over_defaults(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("epochs: 7\nbatch: 4\n")
    args = resolve({"cfg": str(f), "batch": 2})
    assert args["epochs"] == 7 and args["batch"] == 2 and args["lrf"] == load_defaults()["lrf"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("epohcs: 7\n")
    with pytest.raises(UsageError, match=r"unknown key in .*bad.yaml 'epohcs'. Did you mean 'epochs'"):
        resolve({"cfg": str(bad)})


def test_cli_usage_errors_exit_2_without_traceback(tmp_path):
    r = run_cli("classify", "train", "epoch=3", cwd=tmp_path)
    assert r.returncode == 2
    assert "Did you mean 'epochs'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("classify", "trian", cwd=tmp_path)
    assert r.returncode == 2 and "Did you mean 'train'" in r.stderr
    r = run_cli("clasify", "train", cwd=tmp_path)
    assert r.returncode == 2 and "Did you mean 'classify'" in r.stderr


def test_cli_cfg_and_version():
    r = run_cli("cfg")
    assert r.returncode == 0 and "epochs:" in r.stdout
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("visionkit ")


def test_amp_accepts_bool_or_dtype():
    from visionkit.engine.trainer import amp_dtype

    assert resolve({"amp": "fp16"})["amp"] == "fp16" and resolve({"amp": False})["amp"] is False
    cpu = torch.device("cpu")
    assert amp_dtype("fp16", cpu) is None and amp_dtype(True, cpu) is None  # autocast only on CUDA


@pytest.mark.parametrize("role, code", [("cfg", 2), ("model", 2), ("data", 1)])
def test_yaml_with_python_tags_is_a_one_line_error(tmp_path, role, code):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    args = {"cfg": [f"cfg={evil}"], "model": [f"model={evil}"], "data": [f"data={evil}", "model=mnist-tiny"]}[role]
    r = run_cli("classify", "val" if role != "data" else "train", *args, "epochs=1", cwd=tmp_path)
    assert r.returncode == code, r.stderr
    assert "tag plain YAML does not allow (line 1)" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not marker.exists()


def test_broken_yaml_says_where(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\n  lr0: [1,\n")
    r = run_cli("classify", "train", f"cfg={bad}", cwd=tmp_path)
    assert r.returncode == 2 and "is not valid YAML at line 2" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kv, message", [
    ("imgsz=abc", "imgsz='abc': expected an integer in [1, 8192], or height,width"),
    ("imgsz=-5", "imgsz=-5: expected an integer in [1, 8192]"),
    ("batch=0", "batch=0: expected an integer in [1, 65536]"), ("batch=-1", "batch=-1: expected an integer"),
    ("lr0=nan", "lr0=nan: expected a number in (0, 10]"), ("lr0=abc", "lr0='abc': expected a number"),
    ("lr0=inf", "lr0=inf: expected a number"), ("conf=abc", "conf='abc': expected a number in [0, 1]"),
    ("max_det=-1", "max_det=-1: expected an integer in [1, 100000]"),
    ("classes=abc", "classes='abc': expected a class id"),
    ("iou=7", "iou=7: expected a number in [0, 1]"), ("epochs=0", "epochs=0: expected an integer in [1, 1e+06]"),
    ("epochs=2.5", "epochs=2.5: expected an integer"), ("momentum=1", "momentum=1: expected a number in [0, 1)"),
])
def test_every_number_has_a_type_and_a_range(kv, message):
    key, _, text = kv.partition("=")
    with pytest.raises(UsageError) as e:
        resolve({key: parse_value(text)})
    assert message in str(e.value)


def test_ranges_cover_every_numeric_key_and_admit_the_defaults():
    from visionkit.cfg import RANGES, load_defaults

    defaults = load_defaults()
    for key, value in defaults.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert key in RANGES, f"{key} has no declared range"
            assert RANGES[key].admits(value), f"default {key}={value} is outside {RANGES[key]}"
    assert set(RANGES) <= set(defaults)  # no range for a key that does not exist
    assert resolve({"classes": 2})["classes"] == [2] and resolve({"classes": [0, 3]})["classes"] == [0, 3]
    assert resolve({"lr0": 1})["lr0"] == 1.0 and isinstance(resolve({"lr0": 1})["lr0"], float)

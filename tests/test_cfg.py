from pathlib import Path

import pytest
import torch
import yaml

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


@pytest.mark.parametrize(
    "kv, msg",
    [
        ({"epochs": 2.5}, "expected an integer"),
        ({"amp": 3}, "true, false or one of bf16, fp16"),
        ({"amp": "fp32"}, "amp='fp32'"),
        ({"plots": 3}, "true or false"),
        ({"optimizer": "adamm"}, "Did you mean 'adam'"),
        ({"lrf": "x"}, "a number"),
    ],
)
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


@pytest.mark.parametrize(
    "kv, message",
    [
        ("imgsz=abc", "imgsz='abc': expected an integer in [1, 8192], or height,width"),
        ("imgsz=-5", "imgsz=-5: expected an integer in [1, 8192]"),
        ("batch=0", "batch=0: expected an integer in [1, 65536]"),
        ("batch=-1", "batch=-1: expected an integer"),
        ("lr0=nan", "lr0=nan: expected a number in (0, 10]"),
        ("lr0=abc", "lr0='abc': expected a number"),
        ("lr0=inf", "lr0=inf: expected a number"),
        ("max_det=-1", "max_det=-1: expected an integer in [1, 100000]"),
        ("classes=abc", "classes='abc': expected a class id"),
        ("iou=7", "iou=7: expected a number in [0, 1]"),
        ("epochs=0", "epochs=0: expected an integer in [1, 1e+06]"),
        ("epochs=2.5", "epochs=2.5: expected an integer"),
        ("momentum=1", "momentum=1: expected a number in [0, 1)"),
    ],
)
def test_every_number_has_a_type_and_a_range(kv, message):
    key, _, text = kv.partition("=")
    with pytest.raises(UsageError) as e:
        resolve({key: parse_value(text)})
    assert message in str(e.value)


def test_a_task_key_is_checked_with_its_task():
    from visionkit.registry import REGISTRY

    detect_keys = REGISTRY.get("task", "detect").keys
    with pytest.raises(UsageError, match=r"conf='abc': expected a number in \[0, 1\]"):
        resolve({"conf": parse_value("abc")}, detect_keys)
    assert resolve({}, detect_keys).conf == detect_keys["conf"][0]
    with pytest.raises(
        UsageError, match="unknown argument 'conf'. It is a setting of the detect and instance tasks, not of this one"
    ):
        resolve({"conf": 0.5})  # not a shared key


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


def _task_keys():
    from visionkit.registry import REGISTRY

    return {name: REGISTRY.get("task", name).keys for name in REGISTRY.available("task")}


def test_every_numeric_task_key_has_a_range_that_admits_its_default():
    from visionkit.cfg import RANGES, Numbers, Range

    for task, keys in _task_keys().items():
        for key, (default, comment, *rule) in keys.items():
            assert comment, f"{task} key {key} has no comment"
            if key in RANGES:  # a task changing a shared key's default keeps the shared range
                assert RANGES[key].admits(default), f"{task} default {key}={default} is outside {RANGES[key]}"
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                assert rule and isinstance(rule[0], Range), f"{task} key {key} has no declared range"
                assert rule[0].admits(default), f"{task} default {key}={default} is outside {rule[0]}"
            elif rule and isinstance(rule[0], tuple):
                assert default in rule[0], f"{task} default {key}={default!r} is not among {rule[0]}"
            elif rule:
                assert isinstance(rule[0], (Range, Numbers)), f"{task} key {key}: unknown rule {rule[0]!r}"


@pytest.mark.parametrize(
    "task, kv, message",
    [
        ("segment", "dice=-1", "dice=-1: expected a number in [0, 100]"),
        ("segment", "class_weights=[1,-2]", "class_weights=[1, -2]: expected a number or a list of numbers"),
        ("segment", "class_weights=abc", "class_weights='abc': expected a number or a list"),
        ("detect", "box=nan", "box=nan: expected a number in [0, 1000]"),
        ("depth", "depth_mode=absolut", "depth_mode='absolut': choose one of relative, metric"),
        ("depth", "fov=180", "fov=180: expected a number in (0, 180)"),
        ("depth", "max_depth=0", "max_depth=0: expected a number in (0, 1e+06]"),
    ],
)
def test_task_keys_are_checked_against_their_declared_rules(task, kv, message):
    key, _, text = kv.partition("=")
    with pytest.raises(UsageError) as e:
        resolve({key: parse_value(text)}, _task_keys()[task])
    assert message in str(e.value)


def test_task_key_rules_coerce_good_values():
    keys = _task_keys()
    assert resolve({"class_weights": 2}, keys["segment"]).class_weights == [2.0]
    assert resolve({"class_weights": [1, 0.5]}, keys["segment"]).class_weights == [1.0, 0.5]
    assert resolve({"depth_mode": "metric"}, keys["depth"]).depth_mode == "metric"
    assert resolve({"max_depth": 10}, keys["depth"]).max_depth == 10.0


def test_settings_are_read_as_attributes_and_a_misspelling_says_so():
    args = resolve({"epochs": 3})
    assert args.epochs == 3 and args.batch == load_defaults()["batch"]  # defaults come from the one file
    with pytest.raises(AttributeError, match="no setting 'epoch'; did you mean 'epochs'"):
        _ = args.epoch
    changed = args.replace(epochs=5)
    assert changed.epochs == 5 and args.epochs == 3 and type(changed) is type(args)
    assert type(args.plain()) is dict and yaml.safe_load(yaml.safe_dump(args.plain()))["epochs"] == 3


def test_null_is_refused_where_a_key_has_no_decided_elsewhere_value():
    with pytest.raises(UsageError, match=r"bad value cutout=None: .*cutout=0.0"):
        resolve({"cutout": None})
    assert resolve({"lr0": None}).lr0 is None  # null is the default: decided by the optimizer


def test_no_second_defaults_in_the_package():
    """Settings are read as attributes; ``args.get(key, default)`` would be a second default that can disagree
    with cfg/default.yaml (the reason for the settings object)."""
    import re

    package = Path(__file__).resolve().parents[1] / "visionkit"
    found = [
        f"{p.relative_to(package)}:{n}"
        for p in package.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bargs\.get\(", line)
    ]
    assert not found, f"args.get(...) reads a setting with a default of its own: {found}"


@pytest.mark.parametrize(
    "kv", ["name=" + "n" * 256, "data=" + "d" * 300 + ".yaml", "project=" + "/p" * 2100, "source=" + "é" * 130]
)
def test_names_longer_than_file_systems_allow_are_usage_errors(kv):
    key, _, text = kv.partition("=")
    with pytest.raises(UsageError, match=rf"bad value {key}=.*longer than file systems allow \(255 per name"):
        resolve({key: text})
    assert resolve({key: text[:100]})[key] == text[:100]  # within the limits: accepted as it is


def test_data_commands_check_path_lengths_too():
    r = run_cli("data", "check", "data=" + "x" * 300 + "/data.yaml")
    assert r.returncode == 2 and "longer than file systems allow" in r.stderr and "Traceback" not in r.stderr

"""The package's shape, checked: imports point one way (down the layers DESIGN.md draws), shared code names no
task, and a settings key's default is written only in cfg/default.yaml or its task's ``keys``. Each reads the
source (function-level imports and code inside functions included), so a new file is checked without a new test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from visionkit.cfg import load_defaults
from visionkit.registry import REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "visionkit"

# lowest first; a module may import its own layer and those below it. The longest matching prefix decides, so
# export/'s graph and TFLite helpers (what tasks build on) sit below the tasks while its writers sit above them.
LAYERS: dict[str, int] = {
    "version": 0,
    "registry": 0,
    "errors": 0,
    "limits": 0,
    "yamlfile": 0,
    "cfg": 0,
    "models": 1,
    "data": 1,
    "runtime": 1,
    "export": 1,
    "export.graphs": 1,
    "export.tflite_metadata": 1,
    "export.tflite_convert": 1,
    "track": 1,
    "tasks": 2,
    "engine": 3,
    "track.loop": 3,
    "export.exporter": 3,
    "export.writers": 3,
    "export.onnx": 3,
    "export.mediapipe": 3,
    "export.onnx_int8": 3,
    "export.samples": 3,
    "export.openvino": 3,
    "export.openvino_int8": 3,
    "api": 4,
    "cli": 5,
    "serve": 5,
    "explain": 5,
    "runs": 5,  # run loggers are found by the engine through the registry (it never imports them) and may use the API
    "demo": 5,
    "pretrain": 5,
    "benchmark": 5,
    "__main__": 5,
}
ROOT_IMPORTERS = 4  # the package root re-exports the API: only the API's users may import it

# shared code: what runs every task (the data format's folder names and a preset's declared task are not task
# knowledge, so data/ and models/ are left out, except the Label Studio pre-label writer)
SHARED = ("api.py", "cli.py", "cfg", "engine", "runtime", "export", "explain", "serve", "registry.py")
SHARED_FILES = ("data/labelstudio/prelabel.py",)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    parts = module.split(".")[1:]
    best = None
    for prefix, level in LAYERS.items():
        p = prefix.split(".")
        if parts[: len(p)] == p and (best is None or len(p) > best[0]):
            best = (len(p), level)
    return None if best is None else best[1]


def imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """Every visionkit module an AST imports (``from pkg import mod`` counts as pkg.mod when mod is a module)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).is_file() or (
                    PACKAGE.parent / sub.replace(".", "/")
                ).is_dir()
                out.append((sub if is_module else node.module, node.lineno))
    return [(m, line) for m, line in out if m == "visionkit" or m.startswith("visionkit.")]


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert [
        module_name(f) for f in package_files() if module_name(f) != "visionkit" and layer(module_name(f)) is None
    ] == []


def test_imports_point_down_the_layers():
    upward = []
    for path in package_files():
        me = module_name(path)
        if me == "visionkit":
            continue
        mine = layer(me)
        for target, line in imported_modules(ast.parse(path.read_text())):
            theirs = ROOT_IMPORTERS if target == "visionkit" else layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert upward == [], "imports that point up a layer:\n" + "\n".join(upward)


def test_the_layer_check_can_fail(tmp_path):
    """The check sees a function-level import of a higher layer."""
    tree = ast.parse("def f():\n    from visionkit.api import Model\n")
    found = imported_modules(tree)
    assert found == [("visionkit.api", 2)] and layer(found[0][0]) > layer("visionkit.tasks.detect.task")


def docstring_ids(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def task_names_in_code(source: str, tasks: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    docs = docstring_ids(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if text in tasks or any(text.startswith(f"{t}.") or text.startswith(f"{t}/") for t in tasks):
                found.append((node.lineno, text))
    return found


def shared_files() -> list[Path]:
    files = [PACKAGE / f for f in SHARED_FILES]
    for entry in SHARED:
        p = PACKAGE / entry
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return files


def test_shared_code_names_no_task():
    tasks = set(REGISTRY.available("task"))
    assert {"classify", "detect", "segment", "depth"} <= tasks
    leaks = [
        f"{f.relative_to(PACKAGE.parent)}:{line} {text!r}"
        for f in shared_files()
        for line, text in task_names_in_code(f.read_text(), tasks)
    ]
    assert leaks == [], "shared code that names a task (its knowledge belongs in the task's folder):\n" + "\n".join(
        leaks
    )


def test_the_task_name_scan_can_fail():
    source = '"""detect is fine in a docstring."""\nif task == "detect":\n    pass\n'
    assert task_names_in_code(source, {"detect"}) == [(2, "detect")]


SETTINGS_RECEIVERS = ("args", "overrides", "settings", "opts")


def second_defaults(source: str, keys: set[str]) -> list[tuple[int, str]]:
    """``args.get("key", default)`` and ``default if args.key is None else args.key``: a default written again."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in keys
            and not (isinstance(node.args[1], ast.Constant) and node.args[1].value is None)
            and any(r in ast.unparse(node.func.value) for r in SETTINGS_RECEIVERS)
        ):
            found.append((node.lineno, ast.unparse(node)))
        if (
            isinstance(node, ast.IfExp)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Attribute)
            and node.test.left.attr in keys
            and any(isinstance(op, ast.Is) for op in node.test.ops)
            and any(r in ast.unparse(node.test.left.value) for r in SETTINGS_RECEIVERS)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


# keys whose shared default is null meaning "the task decides": the task-level helper that decides is their one
# other place (photos flip left-right, digits do not)
TASK_DECIDES = {"tasks/shared.py": {"fliplr"}}


def test_settings_defaults_are_written_once():
    keys = set(load_defaults())
    for name in REGISTRY.available("task"):
        keys |= set(REGISTRY.get("task", name).keys)
    again = []
    for path in package_files():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cfg/"):
            continue
        allowed = TASK_DECIDES.get(rel, set())
        for line, text in second_defaults(path.read_text(), keys):
            if not any(f".{k} is None" in text for k in allowed):
                again.append(f"visionkit/{rel}:{line} {text}")
    assert again == [], "settings defaults written outside cfg/default.yaml and the task's keys:\n" + "\n".join(again)


@pytest.mark.parametrize(
    "source",
    [
        'x = overrides.get("format", "onnx")',
        "conf = 0.25 if args.conf is None else float(args.conf)",
        'b = args.get("batch", 1)',
    ],
)
def test_the_second_default_scan_can_fail(source):
    assert second_defaults(source, {"format", "conf", "batch"})

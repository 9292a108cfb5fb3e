"""Reading YAML a user gives (cfg=, model=x.yaml, data=): plain YAML only, and every failure one line that names the
file. ``yaml.safe_load`` already refuses Python tags (they could run code); this says so without a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from visionkit.errors import VisionkitError


def read_yaml(path: str | Path, what: str, error: type[VisionkitError]) -> Any:
    """The parsed content of ``path``; ``what`` names the file's role in messages, ``error`` is the error type."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} '{path}' is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise error(
            f"{what} '{path}' uses a tag plain YAML does not allow{where}: {e.problem}; only plain YAML "
            f"(mappings, lists, strings, numbers) is read, never Python objects"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{what} '{path}' is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None

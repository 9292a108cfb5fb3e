"""MediaPipe tests run in the virtualenv that has the `mediapipe` extra (`make edge` builds .venv-edge; `make test`
runs this folder with it). Elsewhere they skip, saying why."""

import importlib.util

import pytest

MISSING = [name for name in ("litert_torch", "mediapipe") if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config, items):
    if not MISSING:
        return
    skip = pytest.mark.skip(
        reason=f"{' and '.join(MISSING)} not installed: MediaPipe tests run in .venv-edge "
        f"(`make edge`; `make test` runs them there)"
    )
    for item in items:
        if "tests/edge/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)

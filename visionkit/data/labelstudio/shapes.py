"""The types of every level of a Label Studio export (task list, task, data, annotations, predictions, results),
checked before anything reads it: a part of the wrong type is reported with its task id and its path into the JSON
(``tasks[3].annotations[0]``) and left out, the rest kept. Region values are checked later, per region type
(regions.py), where a bad one is skipped as a region."""

from __future__ import annotations

from typing import Any

from visionkit.errors import DataError

IMAGE_KEYS = ("image", "img", "url")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _id_ok(value: Any) -> bool:
    """Task ids are sorted and printed: an integer, a text or absent (never a list, an object or a float)."""
    return value is None or (isinstance(value, (int, str)) and not isinstance(value, bool))


def id_order(value: Any) -> tuple[str, Any]:
    """A sort key for ids that are integers, texts or absent (what check_tasks lets through): by type first, so an
    integer is never compared with a text."""
    return (type(value).__name__, value if value is not None else 0)


def _entry(task_id, path: str, problem: str) -> dict:
    return {"task": task_id, "path": path, "reason": problem}


def _check_items(items: Any, task_id, path: str, label: str, malformed: list[dict], dict_only: bool) -> list | None:
    """A list of annotations or predictions with its bad items left out (each reported); None when the level
    itself is not a list. Predictions may also list bare ids (exports without prediction results)."""
    if items is None:
        return []
    if not isinstance(items, list):
        malformed.append(_entry(task_id, path, f"{label} is {_kind(items)}, not a list"))
        return None
    kept = []
    for j, item in enumerate(items):
        where = f"{path}[{j}]"
        if not isinstance(item, dict):
            if not dict_only and isinstance(item, int) and not isinstance(item, bool):
                kept.append(item)  # a prediction id: counted as "ids only" by the importer
                continue
            malformed.append(_entry(task_id, where, f"is {_kind(item)}, not an object"))
            continue
        problem = _item_problem(item)
        if problem:
            malformed.append(_entry(task_id, where, problem))
            continue
        kept.append(item)
    return kept


def _item_problem(item: dict) -> str | None:
    """Why an annotation or prediction cannot be read (the fields that are compared, sorted or iterated)."""
    if not _id_ok(item.get("id")):
        return f"id is {_kind(item['id'])}, not an integer or text"
    for key in ("created_at", "updated_at"):
        if item.get(key) is not None and not isinstance(item[key], str):
            return f"{key} is {_kind(item[key])}, not a date text"
    score = item.get("score")
    if score is not None and not (isinstance(score, (int, float)) and not isinstance(score, bool) and score == score):
        return f"score is {_kind(score)}, not a number"
    if item.get("result") is not None and not isinstance(item["result"], list):
        return f"result is {_kind(item['result'])}, not a list of regions"
    return None


def check_tasks(tasks: Any, source: str = "the export") -> tuple[list[dict], list[dict]]:
    """(tasks with every bad part left out, [{'task', 'path', 'reason'}] for each part left out).

    A task that is not an object, or whose id, data or annotation list has the wrong type, is left out whole;
    a bad annotation or prediction is left out of its task. Not a list at all: one DataError."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise DataError(f"{source} is {_kind(tasks)}, not a Label Studio export (a list of tasks)")
    kept, malformed = [], []
    for i, task in enumerate(tasks):
        where = f"tasks[{i}]"
        if not isinstance(task, dict):
            malformed.append(_entry(None, where, f"is {_kind(task)}, not an object"))
            continue
        tid = task.get("id")
        if not _id_ok(tid):
            malformed.append(_entry(None, f"{where}.id", f"is {_kind(tid)}, not an integer or text"))
            continue
        data = task.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            malformed.append(_entry(tid, f"{where}.data", f"is {_kind(data)}, not an object"))
            continue
        bad_image = next((k for k in IMAGE_KEYS if k in data and not isinstance(data[k], str)), None)
        if bad_image:
            malformed.append(_entry(tid, f"{where}.data.{bad_image}", f"is {_kind(data[bad_image])}, not an image URL"))
            continue
        annotations = _check_items(task.get("annotations"), tid, f"{where}.annotations", "annotations", malformed, True)
        if annotations is None:
            continue  # which annotation was meant is unknowable: the whole task is left out
        predictions = _check_items(
            task.get("predictions"), tid, f"{where}.predictions", "predictions", malformed, False
        )
        if predictions is None:
            predictions = []  # the task's annotations still stand
        kept.append({**task, "data": data, "annotations": annotations, "predictions": predictions})
    return kept, malformed

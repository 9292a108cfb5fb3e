"""Label Studio tasks → a visionkit dataset, with a report of every region written and every one skipped.

Rules (also in docs/dataset-format.md):
- annotations=ground_truth (default): the annotation marked ground truth, else the most recently updated one;
  latest / first: by updated / created time; all: one sample per annotation; merge: every annotation's regions
  in one sample. Cancelled annotations are always skipped.
- predictions are used only with predictions=True, and only for tasks with no usable annotation.
- Object classes (rectangles, polygons, brushes) come from names=, else the labeling config's <Label> order,
  else the order of first appearance. Choices are a separate class list (classification), never mixed in.
- Masks: 0 = background, 1 + class id for each object class (mask_names); regions are painted in result
  order, so where regions overlap the one drawn later wins.
- Objects: one per rectangle, polygon or brush region, never merged or split. A brush region's row is the box of
  its whole mask, and its exact pixels go to instances/<split>/<stem>.json under that row's line (overlapping
  brushes stay apart there); an empty brush is skipped with its reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.data.format import image_size, write_data_yaml
from visionkit.data.instances import mask_box_row
from visionkit.data.labelstudio import images as img_refs
from visionkit.data.labelstudio.config import Control, choice_classes, object_classes, parse_label_config
from visionkit.data.labelstudio.regions import (
    box_row,
    polygon_pixels,
    polygon_row,
    rectangle_corners,
    region_problem,
)
from visionkit.data.labelstudio.report import Report, format_report
from visionkit.data.labelstudio.rle import decode_brush_mask
from visionkit.data.labelstudio.shapes import check_tasks, id_order
from visionkit.data.labelstudio.writer import write_samples
from visionkit.data.output import UnsafeNameError, atomic_dir, prepare_output, safe_component
from visionkit.errors import DataError, UsageError
from visionkit.limits import MAX_IMAGE_PIXELS

POLICIES = ("ground_truth", "latest", "first", "all", "merge")
REGION_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels", "choices", "keypointlabels")


@dataclass
class Sample:
    """One image to write: where it comes from and what goes with it."""

    task_id: Any
    suffix: str
    ref: img_refs.ImageRef
    source: Path | None = None
    data: bytes | None = None
    rows: list = field(default_factory=list)
    regions: list = field(default_factory=list)  # (type, class, payload) painted into the mask in order
    exact: dict = field(default_factory=dict)  # 1-based row line → bool mask (brush regions: instances/)
    choice: str | None = None
    name: str = ""
    split: str = "train"
    size: tuple[int, int] = (0, 0)  # image width, height


class LabelStudioImport:
    def __init__(
        self,
        *,
        config_xml: str | None = None,
        names: list[str] | None = None,
        images_dir: str | Path | None = None,
        annotations: str = "ground_truth",
        predictions: bool = False,
        background: bool = False,
        unknown: str = "error",
        val: float = 0.2,
        test: float = 0.0,
        seed: int = 0,
        download: bool = False,
        headers: dict[str, str] | None = None,
        base_url: str | None = None,
    ):
        if annotations not in POLICIES:
            raise UsageError(f"bad value annotations={annotations!r}: choose one of {', '.join(POLICIES)}")
        if unknown not in ("error", "add"):
            raise UsageError(f"bad value unknown={unknown!r}: choose error or add")
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise UsageError(f"val={val} and test={test} must be fractions in [0, 1) that add up to less than 1")
        self.controls: dict[str, Control] = parse_label_config(config_xml) if config_xml else {}
        self.images_dir = Path(images_dir) if images_dir else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise DataError(f"images folder '{self.images_dir}' does not exist")
        self.policy, self.use_predictions, self.background = annotations, predictions, background
        self.unknown, self.val, self.test, self.seed = unknown, val, test, seed
        self.download, self.headers, self.base_url = download, headers or {}, base_url
        self.report = Report()
        if names:
            self.names, self.names_from = list(names), "names="
        elif object_classes(self.controls):
            self.names, self.names_from = object_classes(self.controls), "labeling config"
        else:
            self.names, self.names_from = [], "first appearance"
        self.choice_names = choice_classes(self.controls)
        for c in self.choice_names:  # each becomes a folder of the classification view
            safe_component(c, "choice in the labeling config")
        self.fixed_names = self.names_from != "first appearance"

    # -- classes --
    def _class_id(self, label: str, task_id, choices: bool = False) -> int:
        names = self.choice_names if choices else self.names
        if label in names:
            return names.index(label)
        fixed = bool(self.controls) if choices else self.fixed_names
        if fixed and self.unknown != "add":
            kind = "choice" if choices else "label"
            raise DataError(
                f"task {task_id}: {kind} '{label}' is not in the class list {names} (from "
                f"{'the labeling config' if choices else self.names_from}); fix the annotation, add it "
                f"to the config or names=, or pass unknown=add to append it"
            )
        names.append(label)
        return len(names) - 1

    # -- annotations --
    def _select(self, task: dict) -> list[tuple[str, dict]]:
        """The annotations (or prediction) to use; every other result is reported as skipped."""
        tid = task.get("id")
        live = []
        for a in task.get("annotations") or []:
            if a.get("was_cancelled"):
                for r in a.get("result") or []:
                    self.report.skip(tid, f"annotation {a.get('id')}", r, "cancelled annotation")
            else:
                live.append(a)
        chosen: list[dict] = []
        if live:
            latest = max(live, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", id_order(a.get("id"))))
            if self.policy in ("all", "merge"):
                chosen = live
            elif self.policy == "first":
                chosen = [min(live, key=lambda a: (a.get("created_at") or "", id_order(a.get("id"))))]
            elif self.policy == "latest":
                chosen = [latest]
            else:
                gt = [a for a in live if a.get("ground_truth")]
                chosen = [max(gt, key=lambda a: (a.get("updated_at") or "", id_order(a.get("id"))))] if gt else [latest]
            for a in live:
                if not any(a is c for c in chosen):
                    for r in a.get("result") or []:
                        self.report.skip(
                            tid, f"annotation {a.get('id')}", r, f"annotation not selected (annotations={self.policy})"
                        )
        preds = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
        picked_pred = None
        if preds and self.use_predictions and not chosen:
            picked_pred = max(preds, key=lambda p: (p.get("score") or 0, id_order(p.get("id"))))
        for p in preds:
            if p is picked_pred:
                continue
            reason = (
                "predictions ignored (pass predictions=True to use them for tasks without annotations)"
                if not self.use_predictions
                else "task has an annotation"
                if chosen
                else "another prediction has a higher score"
            )
            for r in p.get("result") or []:
                self.report.skip(tid, f"prediction {p.get('id')}", r, reason)
        out = [(f"annotation {a.get('id')}", a) for a in chosen]
        if picked_pred is not None:
            out = [(f"prediction {picked_pred.get('id')}", picked_pred)]
        return out

    # -- images --
    def _locate(self, task: dict, sample: Sample) -> str | None:
        """Fill sample.source or sample.data; returns the reason when the image cannot be had."""
        ref = sample.ref
        local, tried = img_refs.find_local(ref, self.images_dir)
        if local is not None:
            sample.source = local
            return None
        if ref.kind in ("upload", "local") and self.base_url:
            sample.data = img_refs.fetch(img_refs.server_url(ref, self.base_url), self.headers, trusted=self.base_url)
            return None
        if ref.kind == "http":
            if not self.download:
                return f"image '{ref.url}' is a URL and download=False (pass download=True to fetch it)"
            sample.data = img_refs.fetch(ref.url, self.headers, trusted=self.base_url)  # the token: its server only
            return None
        where = f" (looked for {', '.join(tried)})" if tried else " (pass images=DIR)"
        return f"image '{ref.url}' not found{where}"

    # -- regions --
    def _regions(self, sample: Sample, origin: str, results: list[dict], size: tuple[int, int]) -> None:
        w, h = size
        tid = sample.task_id
        for r in results:
            if not isinstance(r, dict):
                self.report.skip(tid, origin, {"value": str(r)[:40]}, f"region is {type(r).__name__}, not an object")
                continue
            rtype = r.get("type")
            value = r.get("value") or {}
            control = self.controls.get(str(r.get("from_name", "")))
            if rtype not in REGION_TYPES:
                self.report.skip(tid, origin, r, f"region type '{rtype}' is not used by any visionkit task")
                continue
            if rtype == "keypointlabels":
                self.report.skip(tid, origin, r, "keypoints are skipped until a pose task exists")
                continue
            if r.get("image_rotation"):
                self.report.skip(tid, origin, r, "image_rotation is not 0 (the image was rotated in the editor)")
                continue
            problem = region_problem(r, rtype)
            if problem:
                self.report.skip(tid, origin, r, problem)
                continue
            labels = value.get(rtype) or []
            if len(labels) != 1:
                self.report.skip(tid, origin, r, f"region has {len(labels)} labels; exactly one is needed")
                continue
            label = labels[0]
            if rtype == "choices":
                if control is not None and control.type != "choices":
                    self.report.skip(tid, origin, r, f"from_name '{r.get('from_name')}' is not a Choices tag")
                    continue
                try:  # a choice becomes a folder of the classification view
                    safe_component(label, "choice")
                except UnsafeNameError as e:
                    self.report.skip(tid, origin, r, str(e))
                    continue
                self._class_id(label, tid, choices=True)
                if sample.choice is not None and sample.choice != label:
                    self.report.skip(
                        tid,
                        origin,
                        r,
                        f"a second choice '{label}' (already '{sample.choice}'): "
                        f"multi-label classification is not supported",
                    )
                    continue
                sample.choice = label
                self.report.written["choices"][label] += 1
                continue
            cls = self._class_id(label, tid)
            if rtype == "rectanglelabels":
                corners = rectangle_corners(value, w, h)
                row = box_row(corners, w, h)
                if row is None:
                    self.report.skip(tid, origin, r, "box lies outside the image or has zero size")
                    continue
                if float(value.get("rotation") or 0) % 360:
                    self.report.rotated_boxes += 1
                sample.rows.append((cls, row))
            elif rtype == "polygonlabels":
                pixels = polygon_pixels(value, w, h)
                if len(pixels) < 3:
                    self.report.skip(tid, origin, r, f"polygon has {len(pixels)} points; at least 3 are needed")
                    continue
                sample.rows.append((cls, polygon_row(pixels, w, h)))
                sample.regions.append(("polygon", cls, pixels))
            else:  # brushlabels
                if value.get("format") != "rle":
                    self.report.skip(tid, origin, r, f"brush format '{value.get('format')}' is not rle")
                    continue
                oh, ow = r.get("original_height") or h, r.get("original_width") or w
                try:
                    alpha = self._brush_alpha(value.get("rle"), oh, ow, (w, h))
                except DataError as e:
                    self.report.skip(tid, origin, r, str(e))
                    continue
                if (ow, oh) != (w, h):
                    import cv2

                    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_NEAREST)
                    self.report.notes.append(f"task {tid}: brush mask {ow}×{oh} resized to the image's {w}×{h}")
                pixels = alpha >= 128
                if not pixels.any():
                    self.report.skip(tid, origin, r, "brush region is empty (no painted pixel in the image)")
                    continue
                sample.rows.append((cls, mask_box_row(pixels)))
                sample.exact[len(sample.rows)] = pixels  # the row's line in labels/xxx.txt
                sample.regions.append(("brush", cls, pixels))
            self.report.written[rtype][label] += 1

    @staticmethod
    def _brush_alpha(rle, oh, ow, image_size: tuple[int, int]) -> np.ndarray:
        """The brush's alpha channel at its declared size, checked against the image before decoding."""
        if not (isinstance(oh, int) and isinstance(ow, int)) or oh <= 0 or ow <= 0:
            raise DataError(f"brush region declares original size {ow!r}×{oh!r}; expected positive integers")
        if (ow, oh) != image_size and ow * oh > MAX_IMAGE_PIXELS:
            raise DataError(
                f"brush region declares an original size of {ow}×{oh} for a {image_size[0]}×"
                f"{image_size[1]} image, larger than any image visionkit reads"
            )
        if rle is None:
            raise DataError("brush region has no 'rle' value")
        return decode_brush_mask(rle, oh, ow)

    # -- the whole import --
    def run(
        self,
        tasks: list[dict],
        out: str | Path,
        exist_ok: bool = False,
        verbose: bool = True,
        source: str = "",
        source_paths: dict[str, str | Path | None] | None = None,
    ) -> dict:
        """``source_paths``: files and folders the import reads besides ``images=`` (the export file, the
        config), which ``out`` must stay clear of."""
        out = prepare_output(out, exist_ok, {"images": self.images_dir, **(source_paths or {})})
        rep = self.report
        rep.tasks_read = len(tasks) if isinstance(tasks, list) else 1
        tasks, rep.malformed = check_tasks(tasks, source or "the export")
        # ids are integers, texts or absent (check_tasks): sorted by type first, so they never meet another type
        tasks = sorted(tasks, key=lambda t: id_order(t.get("id")))
        self._tasks = tasks
        samples: list[Sample] = []
        for task in tasks:
            rep.regions_in_export += sum(len(a.get("result") or []) for a in task.get("annotations") or [])
            rep.regions_in_export += sum(
                len(p.get("result") or []) for p in task.get("predictions") or [] if isinstance(p, dict)
            )
            samples += self._task_samples(task)
        if not samples:
            reasons = "; ".join(
                [f"task {t['task']}: {t['reason']}" for t in rep.skipped_tasks[:3]]
                + [f"{m['path']} (task {m['task']}) {m['reason']}" for m in rep.malformed[:3]]
            )
            raise DataError(
                f"nothing to import from {source or 'the tasks'}: {rep.tasks_read} task(s) read, none with "
                f"a usable annotation and image ({reasons or 'no tasks'}; background=True keeps "
                f"unannotated tasks)"
            )
        self._name_and_split(samples)
        with atomic_dir(out, exist_ok, written_by="visionkit data import labelstudio") as tmp:
            report = self._write(samples, tmp, source)
        if verbose:
            print(format_report(report, out))
        return report

    def _task_samples(self, task: dict) -> list[Sample]:
        tid = task.get("id")
        rep = self.report
        chosen = self._select(task)
        if not chosen and not self.background:
            rep.skipped_tasks.append({"task": tid, "reason": "no annotation (pass background=True to keep it)"})
            return []
        data = task.get("data") or {}
        url = self._image_url(data)
        try:
            ref = img_refs.parse_image_ref(url, tid)  # an unsafe path raises: it is never just skipped
        except img_refs.UnsafePathError:
            raise
        except DataError as e:
            self._skip_task(tid, chosen, str(e))
            return []
        proto = Sample(tid, "", ref)
        reason = self._locate(task, proto)
        if reason:
            self._skip_task(tid, chosen, reason)
            return []
        size = self._image_size(proto, tid)
        groups = [chosen] if self.policy == "merge" or len(chosen) <= 1 else [[c] for c in chosen]
        samples = []
        for group in groups or [[]]:
            s = Sample(tid, f"_a{group[0][1].get('id')}" if len(groups) > 1 else "", ref, proto.source, proto.data)
            for origin, ann in group:
                self._regions(s, origin, ann.get("result") or [], size)
            s.size = size
            samples.append(s)
        return samples

    def _image_url(self, data: dict) -> str:
        image_tags = {c.to_name for c in self.controls.values()}
        for key in ("image", "img", "url"):
            if key in data:
                return data[key]
        for key, v in data.items():  # the config's $variable may have any name
            if isinstance(v, str) and (key in image_tags or v.startswith(("/data/", "http", "s3://", "gs://"))):
                return v
        return ""

    def _skip_task(self, tid, chosen: list[tuple[str, dict]], reason: str) -> None:
        self.report.skipped_tasks.append({"task": tid, "reason": reason})
        for origin, ann in chosen:
            for r in ann.get("result") or []:
                self.report.skip(tid, origin, r, f"task skipped: {reason}")

    @staticmethod
    def _image_size(sample: Sample, tid) -> tuple[int, int]:
        import io

        try:  # as displayed (EXIF orientation applied), which is what Label Studio's percentages refer to
            return image_size(sample.source if sample.source else io.BytesIO(sample.data))
        except Exception as e:
            raise DataError(f"task {tid}: image '{sample.source or sample.ref.url}' cannot be decoded: {e}") from e

    def _name_and_split(self, samples: list[Sample]) -> None:
        # two images with one stem (a.jpg twice, or a.jpg and a.png) would share one label and mask file: each
        # gets its task id, and the renaming is reported
        counts = Counter(os.path.splitext(s.ref.name)[0] for s in samples)
        for s in samples:
            stem, ext = os.path.splitext(s.ref.name)
            s.name = (
                f"{stem}_t{s.task_id}{s.suffix}{ext}" if counts[stem] > 1 and not s.suffix else f"{stem}{s.suffix}{ext}"
            )
            safe_component(s.name, f"image name (task {s.task_id})")  # task and annotation ids come from the file
            if s.name != s.ref.name and not s.suffix:
                self.report.renamed.append({"task": s.task_id, "image": s.ref.name, "written_as": s.name})
        stems = Counter(os.path.splitext(s.name)[0] for s in samples)
        dupes = sorted(n for n, c in stems.items() if c > 1)
        if dupes:
            raise DataError(
                f"output image names still share a stem after adding task ids: {dupes[:5]}; rename the images in "
                f"Label Studio so that each has its own base name"
            )
        task_ids = sorted({str(s.task_id) for s in samples})
        order = np.random.default_rng(self.seed).permutation(len(task_ids))
        n_val, n_test = round(self.val * len(task_ids)), round(self.test * len(task_ids))
        split_of = {}
        for rank, i in enumerate(order):
            split_of[task_ids[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        for s in samples:
            s.split = split_of[str(s.task_id)]

    def _write(self, samples: list[Sample], root: Path, source: str) -> dict:
        rep = self.report
        has_objects = any(s.rows for s in samples) or any(
            c.type in ("rectanglelabels", "polygonlabels", "brushlabels") for c in self.controls.values()
        )
        has_masks = any(s.regions for s in samples) or any(
            c.type in ("polygonlabels", "brushlabels") for c in self.controls.values()
        )
        has_choices = bool(self.choice_names) or any(s.choice for s in samples)
        splits = write_samples(samples, root, has_objects, has_masks, has_choices, self.choice_names)
        id_only = sum(1 for t in self._tasks if any(not isinstance(p, dict) for p in t.get("predictions") or []))
        if id_only:
            rep.notes.append(
                f"{id_only} task(s) list prediction ids only (this export does not include prediction "
                f"results); they hold no regions to import"
            )
        if self.names_from == "first appearance" and self.names:
            rep.notes.append(
                "no labeling config or names= given: classes are ordered by first appearance "
                f"({', '.join(self.names)}); pass config=label_config.xml to use the config's order"
            )
        if rep.renamed:
            r = rep.renamed[0]
            rep.notes.append(
                f"{len(rep.renamed)} image(s) renamed because their base names collide (one label file per stem), "
                f"e.g. task {r['task']}: {r['image']} → {r['written_as']} (import_report.json lists them all)"
            )
        if rep.malformed:
            m = rep.malformed[0]
            rep.notes.append(
                f"{len(rep.malformed)} part(s) of the export have the wrong type and were left out, e.g. "
                f"{m['path']} (task {m['task']}): {m['reason']} (import_report.json lists them all)"
            )
        if "val" not in splits:
            rep.notes.append("the val split is empty (too few tasks for val=); training needs a validation split")
        data: dict[str, Any] = {"path": "."}
        for split in ("train", "val", "test"):
            if split in splits:
                data[split] = f"images/{split}"
        if self.names:
            data["names"] = list(self.names)
        if has_masks:
            data["mask_names"] = ["background", *self.names]
            data["ignore_index"] = 255
        if has_choices:
            data["classify"] = "classify"
            data["classify_names"] = list(self.choice_names)
        data["source"] = {"labelstudio": source}
        write_data_yaml(root / "data.yaml", data)
        report = {
            "source": source,
            "options": {
                "annotations": self.policy,
                "predictions": self.use_predictions,
                "background": self.background,
                "unknown": self.unknown,
                "val": self.val,
                "test": self.test,
                "seed": self.seed,
            },
            "classes": {"names": list(self.names), "from": self.names_from, "choices": list(self.choice_names)},
            "tasks": {
                "read": rep.tasks_read,
                "written": len({str(s.task_id) for s in samples}),
                "skipped": rep.skipped_tasks,
            },
            "images_written": len(samples),
            "splits": dict(sorted(splits.items())),
            "regions": {
                "in_export": rep.regions_in_export,
                "written": rep.regions_written(),
                "skipped": len(rep.skipped_regions),
            },
            "written_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(rep.written.items())},
            "rotated_boxes": rep.rotated_boxes,
            "malformed": rep.malformed,
            "renamed": rep.renamed,
            "skipped_regions": rep.skipped_regions,
            "notes": rep.notes,
        }
        if report["regions"]["written"] + report["regions"]["skipped"] != report["regions"]["in_export"]:
            raise AssertionError(f"region accounting is off: {report['regions']}")  # a bug, never user error
        (root / "import_report.json").write_text(json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")
        return report


def import_labelstudio(
    tasks: list[dict],
    out: str | Path,
    *,
    exist_ok: bool = False,
    verbose: bool = True,
    source: str = "",
    source_paths: dict[str, str | Path | None] | None = None,
    **options,
) -> dict:
    """Import Label Studio tasks (full JSON export format) into a dataset folder; returns the report."""
    return LabelStudioImport(**options).run(
        tasks, out, exist_ok=exist_ok, verbose=verbose, source=source, source_paths=source_paths
    )

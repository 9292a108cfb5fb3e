"""What a Label Studio import did: every region written (per kind and class) and every one skipped, with the
reason, kept while importing and printed as a table at the end."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path


class Report:
    def __init__(self):
        self.regions_in_export = 0
        self.written: dict[str, Counter] = defaultdict(Counter)
        self.skipped_regions: list[dict] = []
        self.skipped_tasks: list[dict] = []
        self.notes: list[str] = []
        self.rotated_boxes = 0
        self.tasks_read = 0
        self.malformed: list[dict] = []  # parts of the export of the wrong type, left out: task id, JSON path, why
        self.renamed: list[dict] = []  # images written under another name: their stems collided

    def skip(self, task_id, origin: str, result, reason: str) -> None:
        result = result if isinstance(result, dict) else {}  # a region that is no object is counted all the same
        self.skipped_regions.append(
            {"task": task_id, "from": origin, "region": result.get("id"), "type": result.get("type"), "reason": reason}
        )

    def regions_written(self) -> int:
        return sum(sum(c.values()) for c in self.written.values())


def format_report(report: dict, out: Path) -> str:
    r = report["regions"]
    lines = [
        f"imported {report['images_written']} image(s) from {report['tasks']['read']} task(s) into {out} "
        f"(splits: {', '.join(f'{k} {v}' for k, v in report['splits'].items())})",
        f"classes ({report['classes']['from']}): {', '.join(report['classes']['names']) or '-'}"
        + (f"; choices: {', '.join(report['classes']['choices'])}" if report["classes"]["choices"] else ""),
        f"{'kind':<16} {'class':<20} {'regions':>8}",
    ]
    for kind, per_class in report["written_by_kind"].items():
        for name, n in per_class.items():
            lines.append(f"{kind:<16} {name:<20} {n:>8}")
    lines.append(
        f"regions: {r['in_export']} in export = {r['written']} written + {r['skipped']} skipped"
        + (
            f"; {report['rotated_boxes']} rotated box(es) written as their enclosing box"
            if report["rotated_boxes"]
            else ""
        )
    )
    reasons = Counter(s["reason"] for s in report["skipped_regions"])
    for reason, n in reasons.most_common():
        lines.append(f"  skipped {n:>4} region(s): {reason}")
    for t in report["tasks"]["skipped"]:
        lines.append(f"  skipped task {t['task']}: {t['reason']}")
    lines += [f"note: {n}" for n in report["notes"]]
    lines.append(f"report: {out / 'import_report.json'}")
    return "\n".join(lines)

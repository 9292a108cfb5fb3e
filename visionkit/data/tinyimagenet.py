"""TinyImageNet (200 classes, 64×64) read in its official layout from a local folder.

    ROOT/wnids.txt                         the 200 WordNet ids, one a line: the class order
    ROOT/words.txt                         wnid<TAB>human-readable names (all of ImageNet; comma-separated synonyms)
    ROOT/train/<wnid>/images/*.JPEG        500 training images per class
    ROOT/val/val_annotations.txt           filename<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h, one a validation image
    ROOT/val/images/*.JPEG                 the 10,000 validation images

The test split's labels were never published, so ``val`` serves as the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visionkit.data.format import is_image
from visionkit.errors import DataError

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_SUBDIR = "tiny-imagenet-200"  # what the official zip unpacks to
NATIVE_IMGSZ = 64


@dataclass
class TinyImageNetLayout:
    root: Path
    wnids: list[str]
    names: list[str]


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(
            f"tinyimagenet: '{path}' is missing ({what}). Expected the official layout of "
            f"{TINYIMAGENET_SUBDIR}.zip ({TINYIMAGENET_URL}) under root=: wnids.txt, words.txt, "
            f"train/<wnid>/images/*.JPEG, val/val_annotations.txt and val/images/"
        )
    return path


def find_root(candidates: list[Path]) -> Path:
    """The first candidate (or its ``tiny-imagenet-200/``) that has ``wnids.txt``; else the first, to name in errors."""
    for c in candidates:
        for d in (Path(c), Path(c) / TINYIMAGENET_SUBDIR):
            if (d / "wnids.txt").is_file():
                return d
    if not candidates:
        raise DataError("tinyimagenet: no folder given; pass root=FOLDER (the unpacked tiny-imagenet-200)")
    return Path(candidates[0])


def read_layout(root: Path) -> TinyImageNetLayout:
    """Class order from ``wnids.txt`` and a short human name for each from ``words.txt``."""
    root = Path(root)
    wnids_path = _need(root / "wnids.txt", "the class list, one WordNet id a line")
    wnids = [line.strip() for line in wnids_path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise DataError(f"tinyimagenet: '{wnids_path}' lists no classes; expected one WordNet id (n01443537) a line")
    if len(set(wnids)) != len(wnids):
        dup = sorted({w for w in wnids if wnids.count(w) > 1})
        raise DataError(f"tinyimagenet: '{wnids_path}' lists {', '.join(dup)} more than once")
    words_path = _need(root / "words.txt", "the human-readable class names, wnid<TAB>names a line")
    words: dict[str, str] = {}
    for line in words_path.read_text(encoding="utf-8", errors="replace").splitlines():
        wnid, _, text = line.partition("\t")
        if text:
            words[wnid.strip()] = text.strip()
    unnamed = [w for w in wnids if w not in words]
    if unnamed:
        raise DataError(
            f"tinyimagenet: '{words_path}' has no name for {', '.join(unnamed[:5])}"
            f"{' and more' if len(unnamed) > 5 else ''}; expected a line 'wnid<TAB>name' for each class "
            f"of wnids.txt"
        )
    # the first synonym is the everyday name ("goldfish, Carassius auratus" → "goldfish"); a clash keeps the wnid
    short = [words[w].split(",")[0].strip() for w in wnids]
    names = [f"{s} ({w})" if short.count(s) > 1 else s for s, w in zip(short, wnids)]
    return TinyImageNetLayout(root, wnids, names)


def split_samples(layout: TinyImageNetLayout, split: str) -> list[tuple[Path, int]]:
    """(image path, class index) of ``split``: train from the class folders, val (and test) from the annotations."""
    root, index = layout.root, {w: i for i, w in enumerate(layout.wnids)}
    samples: list[tuple[Path, int]] = []
    if split == "train":
        empty = []
        for wnid in layout.wnids:
            folder = _need(root / "train" / wnid / "images", f"the training images of class {wnid}")
            files = sorted(p for p in folder.iterdir() if is_image(p))
            if not files:
                empty.append(str(folder))
            samples += [(p, index[wnid]) for p in files]
        if empty:
            raise DataError(f"tinyimagenet: no images in {', '.join(empty[:5])}; every class of wnids.txt needs some")
        return samples
    ann = _need(root / "val" / "val_annotations.txt", "the validation labels, filename<TAB>wnid<TAB>box a line")
    images = _need(root / "val" / "images", "the validation images")
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(
                f"tinyimagenet: '{ann}' line {n} is {line!r}; expected filename<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h"
            )
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            raise DataError(f"tinyimagenet: '{ann}' line {n} labels {name} as {wnid}, which wnids.txt does not list")
        samples.append((_need(images / name, f"named on line {n} of {ann.name}"), index[wnid]))
    if not samples:
        raise DataError(f"tinyimagenet: '{ann}' lists no images")
    return samples

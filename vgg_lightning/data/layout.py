"""The data folder's layout (`root/<split>/<class>/<images>`): its image files, its classes, its check."""

# torch-free, as everything it imports (PIL, simplejpeg, numpy): the app checks the layout before it pays for
# importing torch

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence

from .decode import check_file
from .demo import make_demo_dataset

log = logging.getLogger(__name__)
_TOLD: set[str] = set()  # the folders whose files that are no images were counted in a warning
SPLITS = ("train", "val")
# torchvision.datasets.folder.IMG_EXTENSIONS, copied so that the walk needs no torchvision (a test keeps the two
# equal): the files ImageFolder would pick, so a folder prepared for torchvision reads the same here
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    """By extension, case-insensitive, as torchvision's `is_image_file`."""
    return name.lower().endswith(IMG_EXTENSIONS)


class DataLayoutError(ValueError):
    """The data folder is not what the run needs; the message says what was found and what was expected."""


def utf8_name(path: str) -> str:
    """`path`, refused when it is not valid UTF-8 (Python then holds its bytes as surrogates): a class name
    goes into checkpoints, results and predictions.csv, an image's path into predictions.csv and features.npz,
    and none of them can hold it. One rule for every reader: refused at the start, named."""
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            raise DataLayoutError(
                f"{shown}: the name is not valid UTF-8 (written in another encoding): rename it, e.g. all names "
                f"under a folder from Latin-1 with convmv -f latin1 -t utf-8 -r --notest <folder>"
            ) from None
    return path


def image_files(folder: str, outside: list[str] | None = None, others: list[str] | None = None) -> Iterator[str]:
    """The image files under `folder` (a class folder, or any folder of images), by extension as torchvision's
    ImageFolder picks them, in sorted order. Links to files are followed; a link to a folder only when it
    stays inside `folder`, and no folder twice (a link to itself would loop). A link out of it is not
    followed, and is added to `outside`: `train/a/up -> ..` would bring every other class's images in again
    as class a. A file whose link loops or dangles is yielded like any file: reading it fails, and it is
    skipped as unreadable. Names that are not valid UTF-8 are refused (`utf8_name`). `others` collects the files
    left out for their extension (hidden files aside)."""
    yield from _walk(folder, os.path.realpath(folder), set(), outside, others)


def _walk(folder: str, top: str, seen: set, outside: list[str] | None, others: list[str] | None) -> Iterator[str]:
    try:
        identity = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    if (identity.st_dev, identity.st_ino) in seen:
        return
    seen.add((identity.st_dev, identity.st_ino))
    for entry in entries:
        if _is_folder(entry):  # a file link loop (ELOOP) is no folder
            if entry.is_symlink() and os.path.commonpath([top, os.path.realpath(entry.path)]) != top:
                if outside is not None:
                    outside.append(entry.path)
                continue
            yield from _walk(utf8_name(entry.path), top, seen, outside, others)
        elif is_image_file(entry.name):
            yield utf8_name(entry.path)
        elif others is not None and not entry.name.startswith("."):
            others.append(entry.path)


def class_folders(split_root: str) -> list[str]:
    """The class folders of a split, sorted (as torchvision's find_classes); their names valid UTF-8."""
    return sorted(os.path.basename(utf8_name(entry.path)) for entry in os.scandir(split_root) if _is_folder(entry))


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def split_samples(split_root: str, outside: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, [(path, class index)]) of a split: what training, evaluation and features read, and data.check
    checks. The links out of their class folder, which are not followed, go into `outside`; without it, a
    warning names the first of them. The files left out as no images (by their extension) are counted, in a
    warning."""
    classes, links, others = class_folders(split_root), [], []
    samples = [(path, i) for i, name in enumerate(classes)
               for path in image_files(os.path.join(split_root, name), links, others)]  # fmt: skip
    if outside is not None:
        outside += links
    elif links:
        log.warning(
            "%s: %d link(s) to a folder outside its class folder not followed (%s%s): their images would count "
            "as this class's; python -m vgg_lightning.data.check lists them",
            split_root, len(links), links[0], " ..." if len(links) > 1 else "",
        )  # fmt: skip
    if others and split_root not in _TOLD:  # once per folder: the checks and the run walk it alike
        _TOLD.add(split_root)
        shown = ", ".join(os.path.relpath(path, split_root) for path in others[:3]) + (
            ", ..." if len(others) > 3 else ""
        )
        log.warning("%s: left out %d file(s) that are not images by their extension (%s); image files end in %s",
                    split_root, len(others), shown, ", ".join(IMG_EXTENSIONS))  # fmt: skip
    return classes, samples


def validate_layout(root: str, splits: Sequence[str] = SPLITS, num_classes: int | None = None) -> list[str]:
    """Check `root/<split>/<class>/<images>` before any work; returns the sorted class names."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataLayoutError(f"data root {root!r} is a file: set data.root to the folder holding train/ and val/")
    if not os.path.isdir(root):
        raise DataLayoutError(
            f"data root {root!r} does not exist. Set data.root=/path/to/imagenet (with train/ and val/ "
            f"inside), or try the generated demo set: python -m vgg_lightning experiment=demo"
        )
    problems, classes_of = [], {}
    for split in splits:
        path = os.path.join(root, split)
        if not os.path.isdir(path):
            problems.append(f"missing split folder {path!r}")
            continue
        classes = class_folders(path)
        classes_of[split] = classes
        if num_classes is not None and len(classes) != num_classes:
            ilsvrc = ", ILSVRC-2012: for another data set pass data=imagefolder" if num_classes == 1000 else ""
            problems.append(
                f"{path!r} has {len(classes)} class folders, expected {num_classes} (data.num_classes={num_classes}"
                f"{ilsvrc})"
            )
        firsts = {c: next(image_files(os.path.join(path, c)), None) for c in classes}
        empty = [c for c, first in firsts.items() if first is None]
        if empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            problems.append(f"{path!r}: {len(empty)} class folder(s) hold no images: {shown}")
        if not classes:
            problems.append(f"{path!r} has no class folders (expected {split}/<class>/<image files>)")
        elif len(empty) < len(classes) and (undecodable := _none_decodes([f for f in firsts.values() if f])):
            problems.append(f"{path!r}: no image decodes ({undecodable}); python -m vgg_lightning.data.check {root}")
    if len(classes_of) == len(splits) and len({tuple(c) for c in classes_of.values()}) > 1:
        problems.append("the splits have different class folders: " + _class_differences(classes_of))
    if problems:
        raise DataLayoutError(f"data root {root!r} is not an ImageNet-style layout:\n  - " + "\n  - ".join(problems))
    return next(iter(classes_of.values()))


def _none_decodes(paths: list[str]) -> str | None:
    """When not one of `paths` (the first image of each class) decodes: the first one's reason."""
    reasons = []
    for path in paths:
        reason = check_file(path)
        if reason is None:
            return None
        reasons.append(f"{path}: {reason}")
    return f"the first image of each of the {len(paths)} classes fails, e.g. {reasons[0]}"


def _class_differences(classes_of: dict[str, list[str]]) -> str:
    """Each split's class count with the folders only it has, then which classes each split lacks, by name (the
    first few): 'train: 2 (only here: dog), val: 2 (only here: eel); train lacks eel; val lacks dog'."""
    every = set().union(*map(set, classes_of.values()))

    def first_few(names) -> str:
        names = sorted(names)
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    counts = []
    for split, classes in classes_of.items():
        others = set().union(*(set(c) for s, c in classes_of.items() if s != split))
        only = set(classes) - others
        counts.append(f"{split}: {len(classes)}" + (f" (only here: {first_few(only)})" if only else ""))
    parts = [", ".join(counts)]
    for split, classes in classes_of.items():
        missing = every - set(classes)
        if missing:
            parts.append(f"{split} lacks {first_few(missing)}")
    return "; ".join(parts)


def layout_settings(data: Mapping, splits: Sequence[str] = SPLITS) -> dict:
    """What `checked_layout` takes, read from a data config (conf/data/*.yaml) as the datamodule built from it
    reads them: the app checks the very folder, splits and class count the run will read."""
    demo = data.get("demo")
    return {"root": str(data["root"]), "splits": tuple(splits), "num_classes": data.get("num_classes"),
            "demo": dict(demo) if demo else None}  # fmt: skip


def checked_layout(
    root: str, splits: Sequence[str] = SPLITS, num_classes: int | None = None, demo: Mapping | None = None
) -> list[str]:
    """The sorted class names of `root`, its layout validated; the demo set (`demo`: its sizes) is generated
    first, on first use. Called by the app before any work, and by the datamodule: validating reads one image
    per class, cheap enough to do twice."""
    if demo is not None:
        make_demo_dataset(root, **demo)
    return validate_layout(root, splits, num_classes)

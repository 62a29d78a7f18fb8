"""Caltech-101 and Caltech-256 as their archives unpack: a folder per class (`101_ObjectCategories/<class>/`,
`256_ObjectCategories/<nnn.class>/`). The paper counts the background class: 102 classes with
`BACKGROUND_Google` for Caltech-101, 257 with `257.clutter` for Caltech-256. There are no fixed splits: the
transfer protocol draws its own per class."""

from __future__ import annotations

import os

import numpy as np

from .labelled import LabelledImages
from .layout import DataLayoutError, class_folders, is_image_file, utf8_name

# name -> (classes as the paper counts them, the archive's folder, the background class)
LAYOUTS = {
    "caltech101": (102, "101_ObjectCategories", "BACKGROUND_Google"),
    "caltech256": (257, "256_ObjectCategories", "257.clutter"),
}


def class_root(root: str, name: str) -> str:
    """`root` itself, or the archive's own folder inside it (`root/101_ObjectCategories`)."""
    inner = os.path.join(root, LAYOUTS[name][1])
    return inner if os.path.isdir(inner) else root


def read_caltech(root: str, name: str = "caltech101") -> LabelledImages:
    expected, archive, background = LAYOUTS[name]
    if not os.path.isdir(root):
        raise DataLayoutError(
            f"{name} root {root!r} does not exist: set features.root=/path/to/{archive} (a folder per class)"
        )
    folder = class_root(root, name)
    classes = class_folders(folder)
    # the files of each class folder itself (no link or subfolder followed), their names checked as every
    # reader checks them (layout.utf8_name)
    images = {c: sorted(os.path.basename(utf8_name(os.path.join(folder, c, f)))
                        for f in os.listdir(os.path.join(folder, c)) if is_image_file(f)) for c in classes}  # fmt: skip
    problems = []
    empty = [c for c in classes if not images[c]]
    if empty:
        problems.append(f"{len(empty)} class folder(s) hold no images: {', '.join(empty[:5])}")
    if len(classes) != expected:
        problems.append(
            f"{len(classes)} class folders, expected {expected} (the paper counts the background class, "
            f"{background}{': it is missing' if background not in classes else ''})"
        )
    if problems:
        raise DataLayoutError(f"{folder!r} is not the {name} layout ({archive}/<class>/<images>):\n  - " + "\n  - ".join(problems))  # fmt: skip
    paths = [os.path.join(folder, c, f) for c in classes for f in images[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in images[c]], dtype=np.int64)
    return LabelledImages(name, paths, labels, classes, np.full(len(paths), "", dtype="<U1"))

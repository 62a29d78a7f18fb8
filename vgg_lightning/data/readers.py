"""The labelled image sets of Appendix B, read from the folders their publishers ship (never downloaded): one
`LabelledImages` whatever the layout, checked before any work.

- `imagefolder`: `root/<split>/<class>/*` (the ImageNet layout, the demo set); single-label.
- `voc2007`, `voc2012`: PASCAL VOC (`JPEGImages/`, `Annotations/`, `ImageSets/Main/`); multi-label (`voc.py`).
- `caltech101`, `caltech256`: a folder per class, the background class counted as the paper does (`caltech.py`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from .caltech import read_caltech
from .labelled import LabelledImages
from .layout import SPLITS, DataLayoutError, split_samples, validate_layout
from .voc import read_voc


def read_image_folder(root: str, splits: Sequence[str] | None = None) -> LabelledImages:
    splits = tuple(splits or SPLITS)
    classes = validate_layout(root, splits)
    paths, labels, names = [], [], []
    for split in splits:  # the loader's walk (links followed, folder cycles not); every split has `classes`
        samples = split_samples(os.path.join(root, split))[1]
        paths += [path for path, _ in samples]
        labels += [label for _, label in samples]
        names += [split] * len(samples)
    return LabelledImages("imagefolder", paths, np.array(labels, dtype=np.int64), classes, np.array(names))


def _voc(name: str) -> Callable[..., LabelledImages]:
    def read(root: str, splits: Sequence[str] | None = None) -> LabelledImages:
        return read_voc(root, splits, name=name)

    return read


def _caltech(name: str) -> Callable[..., LabelledImages]:
    def read(root: str, splits: Sequence[str] | None = None) -> LabelledImages:
        if splits:
            raise DataLayoutError(f"{name} has no splits of its own (features.splits={list(splits)}): leave it null")
        return read_caltech(root, name)

    return read


READERS: dict[str, Callable[..., LabelledImages]] = {
    "imagefolder": read_image_folder,
    "voc2007": _voc("voc2007"),
    "voc2012": _voc("voc2012"),
    "caltech101": _caltech("caltech101"),
    "caltech256": _caltech("caltech256"),
}


def read_labelled(dataset: str, root: str, splits: Sequence[str] | None = None) -> LabelledImages:
    """The images, labels and splits of `dataset` (a key of READERS) under `root`; a DataLayoutError saying what
    was found and what was expected when the folder is not that layout."""
    if dataset not in READERS:
        raise DataLayoutError(f"features.dataset={dataset!r}: choose one of {', '.join(READERS)}")
    return READERS[dataset](str(root), list(splits) if splits else None)

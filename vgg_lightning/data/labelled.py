"""A labelled image set as every reader of `readers.py` gives it: paths, single- or multi-label labels, class
names and each image's split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE, NEGATIVE, DIFFICULT = 1, 0, -1  # a multi-label cell; DIFFICULT: only objects marked difficult


@dataclass
class LabelledImages:
    """`labels` is (N,) class indices for a single-label set, (N, classes) int8 POSITIVE / NEGATIVE / DIFFICULT
    for a multi-label one (a DIFFICULT cell counts neither way, as VOC's own evaluation has it). `splits` names
    the split of each image ('trainval', 'test', 'train', 'val'), '' where the set has none (Caltech)."""

    name: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    splits: np.ndarray

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def __len__(self) -> int:
        return len(self.paths)

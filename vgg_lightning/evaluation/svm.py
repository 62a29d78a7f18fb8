"""Appendix B's transfer protocol: linear SVMs on the fixed descriptors of task=features (features.npz).

scikit-learn's LinearSVC, one-vs-rest (one binary SVM per class for a multi-label set, its DIFFICULT images
left out of that class). In each split, 20% of the training images (of each class, for a single-label set)
are held out to choose C from `transfer.C`; the SVM is then trained on all the training images with that C
and scored on the test images: mean class recall for a single-label set (Caltech), mean average precision
over the classes for a multi-label one (VOC). Splits are the set's own (`transfer.train_split`,
`transfer.test_split`: VOC-2007 trainval / test) or drawn per class (`transfer.train_per_class`,
`transfer.test_per_class`: Caltech-101 30 / up to 50, Caltech-256 60 / the rest) `transfer.splits` times;
results.json has their mean, standard deviation and each split's figures, beside Table 11's cell.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score, balanced_accuracy_score
from sklearn.svm import LinearSVC

from ..data.labelled import DIFFICULT, POSITIVE
from .protocol_settings import existing_features

log = logging.getLogger(__name__)


# -- the metrics ----------------------------------------------------------------------------------------
def mean_class_recall(labels: np.ndarray, predicted: np.ndarray) -> float:
    """The recall of each class present in `labels`, averaged, in percent (Caltech's measure; scikit-learn
    calls it balanced accuracy)."""
    return 100.0 * float(balanced_accuracy_score(labels, predicted))


def mean_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of each class over its images (DIFFICULT ones left out), averaged over the classes
    with a positive image, in percent (VOC's measure)."""
    aps = []
    for c in range(labels.shape[1]):
        kept = labels[:, c] != DIFFICULT
        truth = labels[kept, c] == POSITIVE
        if truth.any():
            aps.append(average_precision_score(truth, scores[kept, c]))
    return 100.0 * float(np.mean(aps))


def score(labels: np.ndarray, scores: np.ndarray) -> float:
    """The set's measure of SVM scores (N, classes): mean AP (multi-label) or mean class recall."""
    return mean_ap(labels, scores) if labels.ndim == 2 else mean_class_recall(labels, scores.argmax(1))


def metric_name(labels: np.ndarray) -> str:
    return "mean_ap" if labels.ndim == 2 else "mean_class_recall"


# -- the SVMs ---------------------------------------------------------------------------------------------
def svm_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, C: float, classes: int) -> np.ndarray:
    """(N_test, classes) decision values of one-vs-rest linear SVMs trained with C."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the last digits of C's search do not matter
        if train_y.ndim == 1:
            svm = LinearSVC(C=C).fit(train_x, train_y)  # one-vs-rest over the classes seen
            scores = np.full((len(test_x), classes), -np.inf)
            decision = svm.decision_function(test_x)
            scores[:, svm.classes_] = decision if decision.ndim == 2 else np.stack([-decision, decision], 1)
            return scores
        scores = np.zeros((len(test_x), classes))
        for c in range(classes):
            kept = train_y[:, c] != DIFFICULT
            truth = train_y[kept, c] == POSITIVE
            if truth.all() or not truth.any():  # one kind of image only: every test image looks alike to it
                scores[:, c] = float(truth.any())
                continue
            scores[:, c] = LinearSVC(C=C).fit(train_x[kept], truth).decision_function(test_x)
        return scores


def holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of the training images held out to choose C: `fraction` of each class (at least one of a class
    with two or more) for a single-label set, of all images for a multi-label one."""
    held = np.zeros(len(labels), dtype=bool)
    groups = [np.arange(len(labels))] if labels.ndim == 2 else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for members in groups:
        count = int(round(fraction * len(members)))
        count = max(count, 1) if len(members) >= 2 else 0
        held[rng.choice(members, count, replace=False)] = True
    return held


def choose_C(
    x: np.ndarray, y: np.ndarray, grid: Sequence[float], fraction: float, classes: int, rng
) -> tuple[float, dict]:
    """The C of `grid` that scores best on the held-out part when trained on the rest (the smaller on a tie)."""
    held = holdout(y, fraction, rng)
    found = {float(C): score(y[held], svm_scores(x[~held], y[~held], x[held], C, classes)) for C in grid}
    best = max(found.values())
    return next(C for C in sorted(found) if found[C] == best), found


def random_split(
    labels: np.ndarray, train_per_class: int, test_per_class: int | None, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Per class: `train_per_class` random images for training, then up to `test_per_class` of the rest (all of
    them when None) for testing."""
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        train.append(members[:train_per_class])
        test.append(members[train_per_class:][: test_per_class or None])
    return np.concatenate(train), np.concatenate(test)


def splits_of(data: dict, settings: Mapping) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of every split the protocol runs."""
    labels, names = data["labels"], data["splits"]
    if settings.train_split or settings.test_split:
        present = sorted(set(names.tolist()) - {""})
        for key in ("train_split", "test_split"):
            if settings[key] not in present:
                raise ValueError(
                    f"transfer.{key}={settings[key]!r}: the features' splits are {', '.join(present) or 'none'}"
                )
        return [(np.flatnonzero(names == settings.train_split), np.flatnonzero(names == settings.test_split))]
    if labels.ndim == 2:
        raise ValueError("a multi-label set (VOC) is tested on its own splits: set transfer.train_split and test_split")
    counts = np.bincount(labels)
    short = [str(c) for c in np.flatnonzero((counts > 0) & (counts <= settings.train_per_class))]
    if short:
        raise ValueError(
            f"transfer.train_per_class={settings.train_per_class} leaves no test image in class(es) {', '.join(short[:5])} "
            f"(smallest class: {counts[counts > 0].min()} images)"
        )
    rng = np.random.default_rng(settings.seed)
    return [
        random_split(labels, settings.train_per_class, settings.test_per_class, rng) for _ in range(settings.splits)
    ]


def run_protocol(data: dict, settings: Mapping) -> dict:
    """The mean and standard deviation over the splits, and each split's C, C search and figure."""
    x, labels = data["features"], data["labels"]
    classes, name = len(data["classes"]), metric_name(labels)
    rng = np.random.default_rng(settings.seed)
    per_split = []
    for k, (train, test) in enumerate(splits_of(data, settings)):
        C, search = choose_C(x[train], labels[train], settings.C, settings.holdout, classes, rng)
        figure = score(labels[test], svm_scores(x[train], labels[train], x[test], C, classes))
        per_split.append({"split": k, name: round(figure, 3), "C": C, "held_out": {str(c): round(v, 3) for c, v in search.items()},
                          "train_images": int(len(train)), "test_images": int(len(test))})  # fmt: skip
        log.info("split %d: C=%g (held-out %s), %s %.2f%% on %d test images", k, C, search, name, figure, len(test))
    figures = [s[name] for s in per_split]
    return {"metric": name, name: round(float(np.mean(figures)), 3), "std": round(float(np.std(figures)), 3),
            "splits": per_split}  # fmt: skip


def read_features(path: str) -> dict:
    with np.load(existing_features(path)) as f:
        return {k: f[k] for k in f.files}

"""The test settings a run may ask for (the protocol, the scales Q, batch and view bounds), the descriptors'
aggregation over Q (Appendix B) and the transfer task's input, and their checks."""

# torch-free, as everything it imports: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..data.options import CROP
from ..rules import check_rules, is_int, is_number

EVAL_SPLITS = ("val",)  # what task=eval reads: a val-only root (prepare --splits val) is enough

# each protocol, and the methods whose posteriors it averages (`protocols.METHODS`)
PROTOCOL_METHODS: dict[str, tuple[str, ...]] = {
    "center": ("center",),
    "dense": ("dense",),
    "multicrop": ("multicrop",),
    "dense_multicrop": ("dense", "multicrop"),
}


AGGREGATES = ("average", "stack")  # features.aggregate: the descriptors of several Q averaged, or stacked


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOL_METHODS:
        raise ValueError(f"eval.protocol={protocol!r}: choose one of {', '.join(PROTOCOL_METHODS)} (eval=dense, ...)")
    return protocol


def check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"features.aggregate={aggregate!r}: choose one of {', '.join(AGGREGATES)}")
    return aggregate


def is_scales(scales) -> bool:
    """A list of ints Q >= 224: every protocol and the descriptor look at 224x224 views."""
    return not isinstance(scales, (str, int)) and bool(scales) and all(is_int(q) and q >= CROP for q in scales)


SCALES = f"a list of ints Q >= {CROP} (e.g. [256,384,512])"
EVAL_RULES = {  # key -> (accepts the value?, what would do)
    "scales": (lambda v: v is None or is_scales(v), f"{SCALES}, or null"),
    "batch_size": (lambda b: is_int(b) and b >= 1, "a positive int (images per batch)"),
    "crop_batch": (lambda b: is_int(b) and b >= 1, "a positive int (views per forward pass)"),
    "max_pixels": (lambda v: v is None or (is_number(v) and v >= 1), "a number >= 1, or null: no bound"),
    "max_aspect": (lambda v: v is None or (is_number(v) and v >= 1), "a number >= 1, or null: no bound"),
}
FEATURES_RULES = {
    "scales": (is_scales, SCALES),
    "batch_size": (lambda b: is_int(b) and b >= 1, "a positive int (images per batch)"),
    "shard_size": (lambda b: is_int(b) and b >= 1, "a positive int (images per shard file)"),
}
TRANSFER_RULES = {
    "train_per_class": (lambda n: is_int(n) and n >= 1, "a positive int (training images per class)"),
    "test_per_class": (lambda n: n is None or (is_int(n) and n >= 1), "a positive int, or null: all the rest"),
    "splits": (lambda n: is_int(n) and n >= 1, "a positive int (random splits)"),
    "holdout": (lambda v: is_number(v) and 0 < v < 1, "a fraction in (0, 1) of the training images (0.2)"),
    "C": (lambda c: not isinstance(c, (str, int, float)) and bool(c) and all(is_number(v) and v > 0 for v in c),
          "a list of the C values > 0 to choose from (e.g. [0.1,1,10])"),
}  # fmt: skip


def check_eval_settings(eval_cfg) -> None:
    """Refuse, before any work (before the training they follow), test settings that cannot run."""
    check_protocol(eval_cfg.get("protocol", "center"))
    check_rules("eval", eval_cfg, EVAL_RULES)


def check_features_settings(features) -> None:
    """task=features' settings, refused before any work."""
    check_aggregate(features.get("aggregate", "average"))
    check_rules("features", features, FEATURES_RULES)


def check_transfer_settings(transfer) -> None:
    """task=transfer's settings and its input, refused before any work."""
    check_rules("transfer", transfer, TRANSFER_RULES)
    existing_features(transfer.get("features"))


# what task=transfer reads of a features.npz (task=features writes these and more)
FEATURE_ARRAYS = ("features", "labels", "splits", "classes", "dataset", "config", "scales", "aggregate")


def existing_features(path: str | None) -> str:
    """task=transfer's input, `transfer.features`, refused when it names no file, or a file that is not a
    features.npz of task=features: not an .npz, an array missing, or an array of Python objects, which only
    unpickling could read (never done: unpickling runs code). Only the arrays' headers are read here."""
    if not path:
        raise ValueError("task=transfer needs transfer.features=<a task=features run dir>/features.npz")
    if not os.path.isfile(path):
        raise ValueError(f"transfer.features={path!r} does not exist: run task=features first")
    not_ours = f"transfer.features={path!r} is not a features.npz of task=features"
    try:
        with zipfile.ZipFile(path) as archive:
            dtypes = {name.removesuffix(".npy"): _npy_dtype(archive, name) for name in archive.namelist()}
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"{not_ours} (not a NumPy .npz archive: {error})") from None
    missing = [name for name in FEATURE_ARRAYS if name not in dtypes]
    objects = [name for name, dtype in dtypes.items() if dtype.hasobject]
    if missing or objects:
        problem = f"it lacks {', '.join(missing)}" if not objects else (
            f"its array(s) {', '.join(objects)} hold Python objects (dtype object), which only unpickling could "
            f"read: never done, as unpickling can run code")  # fmt: skip
        raise ValueError(f"{not_ours}: {problem}. Make it with task=features")
    return str(path)


def _npy_dtype(archive: zipfile.ZipFile, name: str) -> np.dtype:
    """The dtype in the header of an .npy member (its data is not read)."""
    with archive.open(name) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read_header(f)[2]

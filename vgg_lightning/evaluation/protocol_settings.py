"""The test settings a run may ask for (the protocol, the scales Q, batch and view bounds), the descriptors'
aggregation over Q (Appendix B) and the transfer task's input, and their checks."""

# torch-free, as everything it imports: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

import os

from ..data.scales import CROP

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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_eval_settings(eval_cfg) -> None:
    """Refuse, before any work (before the training they follow), test settings that cannot run: every
    protocol looks at 224x224 views, so Q >= 224."""
    check_protocol(eval_cfg.get("protocol", "center"))
    scales = eval_cfg.get("scales")
    if scales is not None and (isinstance(scales, (str, int)) or not scales or not all(
            isinstance(q, int) and not isinstance(q, bool) and q >= CROP for q in scales)):  # fmt: skip
        raise ValueError(f"eval.scales={scales!r}: expected a list of ints Q >= {CROP} (e.g. [256,384,512]), or null")
    for key, accepted in (("batch_size", "images per batch"), ("crop_batch", "views per forward pass")):
        if key in eval_cfg and not _positive_int(eval_cfg[key]):
            raise ValueError(f"eval.{key}={eval_cfg[key]!r}: expected a positive int ({accepted})")
    for key in ("max_pixels", "max_aspect"):
        if eval_cfg.get(key) is not None and not (isinstance(eval_cfg[key], (int, float)) and eval_cfg[key] >= 1):
            raise ValueError(f"eval.{key}={eval_cfg[key]!r}: expected a number >= 1, or null: no bound")


def existing_features(path: str | None) -> str:
    """task=transfer's input, `transfer.features`, refused when it names no file."""
    if not path:
        raise ValueError("task=transfer needs transfer.features=<a task=features run dir>/features.npz")
    if not os.path.isfile(path):
        raise ValueError(f"transfer.features={path!r} does not exist: run task=features first")
    return str(path)

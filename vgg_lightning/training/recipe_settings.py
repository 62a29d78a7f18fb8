"""The optimiser settings a run may ask for (SGD's and the plateau schedule's), the Trainer's (its length, its
loop's counts, its devices: conf/trainer), what its net may start from, and their checks."""

# torch-free: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..rules import check_rules, is_int, is_number

OPTIM_RULES = {  # key -> (accepts the value?, what would do)
    "lr": (lambda v: is_number(v) and v >= 0, "a learning rate >= 0 (0.01: the paper; 0 trains nothing)"),
    "momentum": (lambda v: is_number(v) and 0 <= v < 1, "in [0, 1) (0.9: the paper)"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "an L2 multiplier >= 0 (5e-4: the paper)"),
    "factor": (lambda v: is_number(v) and 0 < v < 1, "the lr's multiplier at a plateau, in (0, 1) (0.1: the paper)"),
    "patience": (lambda v: is_number(v) and v >= 0 and v == int(v), "an int number of epochs >= 0"),
    "max_decreases": (lambda v: is_number(v) and v >= 0 and v == int(v), "an int >= 0"),
}


def check_optim_settings(optim: Mapping) -> None:
    """Refuse, before any work, optimiser settings SGD or the plateau schedule cannot use."""
    check_rules("optim", optim, OPTIM_RULES)


def _int_at_least(low: int, none: bool = False):
    """An int >= low (or null, when `none`)."""
    return lambda v: (none and v is None) or (is_int(v) and v >= low)


def _batches(v) -> bool:
    """Lightning's limit_*_batches: null, a number of batches, or a fraction of them."""
    return v is None or (is_int(v) and v >= 0) or (is_number(v) and 0 <= v <= 1)


def _devices(v) -> bool:
    """Lightning's devices: a count, -1 or 'auto' (all), a list of indices, or their string ('0,1')."""
    if isinstance(v, str):
        return v == "auto" or all(part.strip().lstrip("-").isdigit() for part in v.split(",") if part.strip())
    if is_int(v):
        return v >= 1 or v == -1
    return isinstance(v, Sequence) and bool(v) and all(is_int(i) and i >= 0 for i in v)


BATCHES = "a number of batches (an int), a fraction of them in [0, 1], or null: all"
TRAINER_RULES = {  # Lightning's Trainer arguments (conf/trainer), refused before torch and Lightning are imported
    "max_epochs": (_int_at_least(-1, none=True), "an int number of epochs (74: the paper; -1: no limit)"),
    "max_steps": (_int_at_least(-1), "an int number of steps (-1: no limit)"),
    "limit_train_batches": (_batches, BATCHES),
    "limit_val_batches": (_batches, BATCHES),
    "limit_test_batches": (_batches, BATCHES),
    "check_val_every_n_epoch": (_int_at_least(1, none=True), "an int number of epochs >= 1"),
    "num_sanity_val_steps": (_int_at_least(-1), "an int number of batches (-1: all)"),
    "accumulate_grad_batches": (_int_at_least(1), "an int number of batches >= 1"),
    "log_every_n_steps": (_int_at_least(1), "an int number of steps >= 1"),
    "gradient_clip_val": (lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0, or null: no clipping"),
    "devices": (_devices, "a number of devices, -1 or 'auto' (all of them), or a list of indices ([0,1])"),
    "num_nodes": (_int_at_least(1), "an int number of machines >= 1"),
}


def check_trainer_settings(trainer: Mapping) -> None:
    """Refuse, before any work, Trainer settings Lightning cannot use (it would fail after the imports, with a
    traceback, or, for max_epochs, in the middle of fit)."""
    check_rules("trainer", trainer, TRAINER_RULES)


def check_start(weights: str | None, init_from: str | None) -> None:
    """One starting point for the net at most: torchvision's file (weights=) or a checkpoint (model.init_from)."""
    if weights and init_from:
        raise ValueError(
            f"weights={weights} and model.init_from={init_from}: the net starts from one of them (weights=null "
            f"starts it from the checkpoint)"
        )

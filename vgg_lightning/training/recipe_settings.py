"""The optimiser settings a run may ask for (SGD's and the plateau schedule's), what its net may start from,
and their checks."""

# torch-free: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

from collections.abc import Mapping

from ..rules import check_rules, is_number

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


def check_start(weights: str | None, init_from: str | None) -> None:
    """One starting point for the net at most: torchvision's file (weights=) or a checkpoint (model.init_from)."""
    if weights and init_from:
        raise ValueError(
            f"weights={weights} and model.init_from={init_from}: the net starts from one of them (weights=null "
            f"starts it from the checkpoint)"
        )

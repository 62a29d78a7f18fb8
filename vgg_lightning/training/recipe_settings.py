"""The optimiser settings a run may ask for (SGD's and the plateau schedule's), what its net may start from,
and their checks."""

# torch-free: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

from collections.abc import Mapping

OPTIM_RULES = {  # key -> (accepted, what it means)
    "lr": (lambda v: v >= 0, "a learning rate >= 0 (0.01: the paper; 0 trains nothing)"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1) (0.9: the paper)"),
    "weight_decay": (lambda v: v >= 0, "an L2 multiplier >= 0 (5e-4: the paper)"),
    "factor": (lambda v: 0 < v < 1, "the lr's multiplier at a plateau, in (0, 1) (0.1: the paper)"),
    "patience": (lambda v: v >= 0 and v == int(v), "an int number of epochs >= 0"),
    "max_decreases": (lambda v: v >= 0 and v == int(v), "an int >= 0"),
}


def check_optim_settings(optim: Mapping) -> None:
    """Refuse, before any work, optimiser settings SGD or the plateau schedule cannot use."""
    for key, (ok, accepted) in OPTIM_RULES.items():
        value = optim.get(key)
        if key in optim and not (isinstance(value, (int, float)) and not isinstance(value, bool) and ok(value)):
            raise ValueError(f"optim.{key}={value!r}: expected {accepted}")


def check_start(weights: str | None, init_from: str | None) -> None:
    """One starting point for the net at most: torchvision's file (weights=) or a checkpoint (model.init_from)."""
    if weights and init_from:
        raise ValueError(f"weights={weights} and model.init_from={init_from}: the net starts from one of them")

"""The data settings a run may ask for (batch sizes, loader processes, scales S and Q) and their check."""

# torch-free, as everything it imports: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import paper
from ..rules import check_rules, is_int

CROP = 224


def parse_scale(scale) -> tuple[int, int]:
    """256 -> (256, 256); 'jitter' -> the paper's (256, 512); [a, b] -> (a, b). The range is inclusive."""
    if isinstance(scale, str) and scale.strip().lower() == "jitter":
        return paper.JITTER
    if isinstance(scale, Sequence) and not isinstance(scale, str) and len(scale) == 2:  # also Hydra's ListConfig
        low, high = int(scale[0]), int(scale[1])
    else:
        try:
            low = high = int(scale)
        except (TypeError, ValueError):
            raise ValueError(f"data.scale={scale!r}: use an int S (256, 384), 'jitter', or [S_min, S_max]") from None
    if not CROP <= low <= high:
        raise ValueError(f"data.scale={scale!r}: S must be at least the crop size {CROP} (and S_min <= S_max)")
    return low, high


def default_test_scale(train_scale) -> int:
    """Q when none is given: S for a fixed S, the middle of the range for jittering (the paper's 384)."""
    low, high = parse_scale(train_scale)
    return (low + high) // 2


def check_data_settings(data: Mapping) -> None:
    """Refuse, before any work, data settings that cannot load a batch (naming the key, the value and what
    would do). The scales and the other choices are checked by their own parsers, called here too."""
    rules = {
        "batch_size": (lambda b: is_int(b) and b >= 1, "the global batch, a positive int (256: the paper)"),
        "max_device_batch": (lambda b: b is None or (is_int(b) and b >= 1), "a positive int, or null: no limit"),
        "num_workers": (lambda n: is_int(n) and n >= 0, "a number of loader processes >= 0"),
        "test_scale": (lambda q: q is None or (is_int(q) and q >= CROP), f"an int Q >= {CROP}, or null"),
        "num_classes": (lambda c: c is None or (is_int(c) and c >= 1), "a positive int, or null: the folders'"),
    }
    check_rules("data", data, rules)
    if "scale" in data:
        parse_scale(data.get("scale_range") if str(data["scale"]).lower() == "jitter" else data["scale"])

"""The model settings a run may ask for (config names and their spellings, init schemes) and their check."""

# torch-free, as everything it imports: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

from collections.abc import Mapping

from ..rules import check_rules, is_number
from .tables import ALL_CONFIGS, CONFIGS, FAST_CONFIGS, SHALLOW_CONFIGS

_BY_KEY = {name.upper(): name for name in ALL_CONFIGS}
INIT_SCHEMES = ("gaussian", "xavier", "kaiming")


def canonical_config(name: str) -> str:
    """'d', 'a_lrn', 'A-LRN' -> the Table 1 name, 'b_shallow' -> 'B-shallow', 'vgg_f', 'VGG-F' -> 'VGG-F';
    anything else is a ValueError listing the choices."""
    key = str(name).strip().upper().replace("_", "-")
    if key not in _BY_KEY:
        raise ValueError(
            f"unknown VGG config {name!r}: choose one of {', '.join(CONFIGS)} (paper Table 1), "
            f"{', '.join(SHALLOW_CONFIGS)} (Sec. 4.1) or {', '.join(FAST_CONFIGS)} (Chatfield et al. 2014; also "
            f"spelled vgg_f, vgg_m, vgg_s)"
        )
    return _BY_KEY[key]


def check_model_settings(model: Mapping) -> None:
    """Refuse, before any work, model settings no net can be built from (naming the key, the value and what
    would do)."""
    canonical_config(model.get("config", "D"))
    rules = {
        "width": (
            lambda w: is_number(w) and 0 < w <= 8,
            "a positive multiplier of the widths, up to 8 (1.0: the paper)",
        ),
        "dropout": (lambda p: is_number(p) and 0 <= p < 1, "a probability in [0, 1) (0.5: the paper)"),
        "init": (lambda i: i in INIT_SCHEMES, f"one of {', '.join(INIT_SCHEMES)}"),
        "init_std": (lambda s: is_number(s) and s > 0, "a positive standard deviation (0.01: the paper)"),
    }
    check_rules("model", model, rules)


def settings_spec(model: Mapping, num_classes: int) -> dict:
    """`VGG.spec()` of the net that a run's model settings (conf/model, as its checkpoints keep them) build,
    without building it."""
    return {
        "config": canonical_config(model.get("config", "D")),
        "num_classes": num_classes,
        "width": float(model.get("width", 1.0)),
    }


def paper_warm_start(source: str, target: str) -> bool:
    """Whether Sec. 3.1 starts a net of config `target` from a trained `source`: A into a deeper net of Table 1
    (B, C, D, E), or a config from itself (S=384 from S=256, the jittered net from S=384)."""
    source, target = canonical_config(source), canonical_config(target)
    return source == target or (source == "A" and target in CONFIGS and target not in ("A", "A-LRN"))

"""The data options a run may ask for (batch sizes, loader processes, the scales S and Q, which loader decodes)
and their check."""

# torch-free, as everything it imports: the app refuses a mistyped value before it pays for importing torch

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence

from .. import paper
from ..rules import check_rules, is_int

CROP = 224
LOADERS = ("torch", "dali")  # data.loader: our DataLoader's workers decode (data.decode), or NVIDIA DALI does
DALI_BACKENDS = ("auto", "cpu", "mixed")  # auto: mixed (nvJPEG, the GPU's JPEG engines) with a GPU, else cpu
DALI_INSTALL = 'pip install "vgg-lightning[dali]"'
DALI_DEFAULTS = {"backend": "auto", "threads": 4, "prefetch": 2}  # data.dali (conf/data/imagenet.yaml says the same)


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
    check_loader_settings(data.get("loader", "torch"), data.get("dali") or {})


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package (nvidia) is not there either
        return False


def check_loader_settings(loader, dali: Mapping) -> None:
    """data.loader and, for `dali`, data.dali's settings and DALI itself (looked up, not imported: no torch)."""
    if loader not in LOADERS:
        raise ValueError(f"data.loader={loader!r}: choose one of {', '.join(LOADERS)}")
    rules = {
        "backend": (lambda b: b in DALI_BACKENDS, f"one of {', '.join(DALI_BACKENDS)}"),
        "threads": (lambda n: is_int(n) and n >= 1, "a number of DALI threads >= 1"),
        "prefetch": (lambda n: is_int(n) and n >= 1, "a number of batches DALI prepares ahead, >= 1"),
    }
    check_rules("data.dali", dali, rules)
    if loader == "dali" and not _installed("nvidia.dali"):
        raise ValueError(f"data.loader=dali needs NVIDIA DALI, which is not installed: {DALI_INSTALL}")

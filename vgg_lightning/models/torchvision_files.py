"""torchvision's vgg11/13/16/19 (the paper's A/B/D/E): their names, weight files and published accuracy, and
where torch's hub cache keeps the files. Never a download: a missing file is one message saying where it must
be and how to get it."""

# torch-free: the tasks' checks find a missing file before they pay for importing torch

from __future__ import annotations

import os
from dataclasses import dataclass

from .choices import canonical_config

DOWNLOADS = "https://download.pytorch.org/models"


@dataclass(frozen=True)
class TorchvisionVGG:
    name: str  # torchvision.models.<name>
    file: str  # its IMAGENET1K_V1 weights, as torch.hub caches them
    top1_accuracy: float  # torchvision's published centre-crop 224 accuracy (%), a different recipe from the paper's
    top5_accuracy: float


TORCHVISION = {
    "A": TorchvisionVGG("vgg11", "vgg11-8a719046.pth", 69.02, 88.63),
    "B": TorchvisionVGG("vgg13", "vgg13-19584684.pth", 69.93, 89.25),
    "D": TorchvisionVGG("vgg16", "vgg16-397923af.pth", 71.59, 90.38),
    "E": TorchvisionVGG("vgg19", "vgg19-dcbb9e9d.pth", 72.38, 90.88),
}
TORCHVISION_NAMES = {config: vgg.name for config, vgg in TORCHVISION.items()}


class WeightsFileMissing(FileNotFoundError):
    """torchvision's file is not where the run looks for it; the message says where and how to get it."""


def torchvision_config(config: str) -> str:
    config = canonical_config(config)
    if config not in TORCHVISION_NAMES:
        raise ValueError(
            f"torchvision has no VGG config {config}: it ships A, B, D and E only, choose model=A, B, D or E "
            f"({', '.join(f'{c}={n}' for c, n in TORCHVISION_NAMES.items())})"
        )
    return config


def hub_dir() -> str:
    """`torch.hub.get_dir()` without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub (tests/test_checkpoints.py keeps the two equal)."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))), "hub")


def torchvision_weights_path(config: str, weights_path: str | None = None) -> str:
    """weights_path, or torch's hub cache ($TORCH_HOME/hub/checkpoints): never a download."""
    name = TORCHVISION[torchvision_config(config)].file
    folder = os.path.join(hub_dir(), "checkpoints")
    path = os.path.expanduser(weights_path or os.path.join(folder, name))
    if not os.path.isfile(path):
        where = f"weights_path={path}" if weights_path else f"torch's hub cache, {path}"
        raise WeightsFileMissing(
            f"torchvision's weights for config {canonical_config(config)} are not at {where} (vgg-lightning never "
            f"downloads): get {name} once with `curl -L --create-dirs -o {path} {DOWNLOADS}/{name}`, or pass "
            f"weights_path=/path/to/{name}"
        )
    return path

"""The model zoo: the paper's Table 1 configurations, the fast VGG-F/M/S, and torchvision interop."""

from .interop import from_torchvision, to_torchvision
from .vgg import (
    ALL_CONFIGS,
    CONFIGS,
    FAST_CONFIGS,
    FAST_NETS,
    TABLE_1,
    VGG,
    build_vgg,
    canonical_config,
    count_parameters,
    flops_per_image,
)

__all__ = [
    "ALL_CONFIGS",
    "CONFIGS",
    "FAST_CONFIGS",
    "FAST_NETS",
    "TABLE_1",
    "VGG",
    "build_vgg",
    "canonical_config",
    "count_parameters",
    "flops_per_image",
    "from_torchvision",
    "to_torchvision",
]

"""The model zoo: the paper's Table 1 configurations, and torchvision interop."""

from .interop import from_torchvision, to_torchvision
from .vgg import CONFIGS, TABLE_1, VGG, build_vgg, canonical_config, count_parameters, flops_per_image

__all__ = [
    "CONFIGS",
    "TABLE_1",
    "VGG",
    "build_vgg",
    "canonical_config",
    "count_parameters",
    "flops_per_image",
    "from_torchvision",
    "to_torchvision",
]

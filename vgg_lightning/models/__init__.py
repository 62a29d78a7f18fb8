"""The model zoo: the paper's Table 1 configurations, the fast VGG-F/M/S, and torchvision interop."""

from .interop import TORCHVISION, from_torchvision, to_torchvision, torchvision_weights_path
from .vgg import (
    ALL_CONFIGS,
    CONFIGS,
    FAST_CONFIGS,
    FAST_NETS,
    TABLE_1,
    VGG,
    build_vgg,
    canonical_config,
    check_model_settings,
    count_parameters,
    flops_per_image,
    from_settings,
    settings_spec,
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
    "check_model_settings",
    "from_settings",
    "from_torchvision",
    "settings_spec",
    "to_torchvision",
    "torchvision_weights_path",
    "TORCHVISION",
]

"""The model zoo: the paper's Table 1 configurations, the fast VGG-F/M/S, torchvision interop, and the authors'
released Caffe nets."""

from .choices import canonical_config, check_model_settings, settings_spec
from .tables import ALL_CONFIGS, CONFIGS, FAST_CONFIGS, FAST_NETS, TABLE_1
from .torchvision_files import TORCHVISION, torchvision_weights_path

__all__ = [
    "ALL_CONFIGS",
    "CaffeModelError",
    "CONFIGS",
    "FAST_CONFIGS",
    "FAST_NETS",
    "TABLE_1",
    "VGG",
    "build_vgg",
    "canonical_config",
    "count_parameters",
    "flops_per_image",
    "from_caffe",
    "check_model_settings",
    "from_settings",
    "from_torchvision",
    "read_caffemodel",
    "read_prototxt",
    "settings_spec",
    "to_torchvision",
    "torchvision_state_config",
    "torchvision_weights_path",
    "TORCHVISION",
]

# Importing models.choices runs this file first: the nets and their interop import torch, so they are imported
# on first use, and the app's settings checks stay torch-free.
_IN_VGG = ("VGG", "build_vgg", "count_parameters", "flops_per_image", "from_settings")
_IN_INTEROP = ("from_torchvision", "to_torchvision", "torchvision_state_config")
_IN_CAFFE = ("CaffeModelError", "read_caffemodel", "read_prototxt")  # numpy and protobuf only


def __getattr__(name: str):
    if name in _IN_VGG:
        from . import vgg

        return getattr(vgg, name)
    if name in _IN_INTEROP:
        from . import interop

        return getattr(interop, name)
    if name in _IN_CAFFE:
        from . import caffe

        return getattr(caffe, name)
    if name == "from_caffe":
        from . import caffe_vgg

        return caffe_vgg.from_caffe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

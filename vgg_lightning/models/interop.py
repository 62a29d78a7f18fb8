"""torchvision interop: its vgg11/13/16/19 are the paper's A/B/D/E, with the FC layers as `nn.Linear`; weights
in and out. (What torchvision says of them, names, weight files, accuracy, and where its files are:
`models.torchvision_files`.)"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .torchvision_files import TORCHVISION_NAMES, torchvision_config
from .vgg import VGG, weight_layers

_CLASSIFIER = {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}


# torchvision's state dicts are told apart by their conv layers: the weight layers less the three FC
_CONFIG_BY_CONV_COUNT = {weight_layers(config) - 3: config for config in TORCHVISION_NAMES}


def _feature_keys(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """torchvision's conv weights, in network order (features.0, features.2, ... sorted numerically)."""
    keys = [k for k in state_dict if k.startswith("features.") and k.endswith(".weight")]
    return sorted(keys, key=lambda k: int(k.split(".")[1]))


def torchvision_state_config(state_dict) -> str | None:
    """The config (A, B, D or E) of torchvision's VGG state dict, by its conv layers; None for anything else (a
    checkpoint of ours, a batch-norm VGG)."""
    if not isinstance(state_dict, Mapping) or "classifier.6.weight" not in state_dict:
        return None
    if any("running_mean" in key for key in state_dict):
        return None
    return _CONFIG_BY_CONV_COUNT.get(len(_feature_keys(state_dict)))


def from_torchvision(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor], config: str) -> VGG:
    """A `VGG` of `config` (A, B, D or E) carrying torchvision's vgg11/13/16/19 weights; its logits equal
    torchvision's on 224x224 input. A state dict of another config, or of a batch-norm variant, is refused."""
    config = torchvision_config(config)
    state = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    if any("running_mean" in k for k in state):
        raise ValueError("this is a batch-norm VGG (vgg*_bn): the paper's nets have no batch norm")
    keys = _feature_keys(state)
    found = _CONFIG_BY_CONV_COUNT.get(len(keys))
    if found != config:
        what = f"torchvision's {TORCHVISION_NAMES[found]} (config {found})" if found else f"{len(keys)} conv layers"
        raise ValueError(f"the weights are {what}, not config {config} ({TORCHVISION_NAMES[config]})")
    if "classifier.6.weight" not in state:
        raise ValueError("the weights have no classifier.6 (fc8): not a torchvision VGG state dict")
    num_classes, hidden = state["classifier.6.weight"].shape
    width = state[keys[0]].shape[0] / 64
    model = VGG(config, num_classes=num_classes, width=width)
    if model.head.fc7.out_channels != hidden:
        raise ValueError(f"fc7 has {hidden} units; width {width} expects {model.head.fc7.out_channels}")
    targets = model.conv_layers()
    sources = [k.rsplit(".", 1)[0] for k in keys] + list(_CLASSIFIER.values())
    with torch.no_grad():
        for (name, layer), source in zip(targets.items(), sources):
            weight = state[f"{source}.weight"]
            if weight.numel() != layer.weight.numel():
                raise ValueError(
                    f"{name}: torchvision's {source}.weight has shape {tuple(weight.shape)}, "
                    f"config {config} needs {tuple(layer.weight.shape)}"
                )
            layer.weight.copy_(weight.reshape(layer.weight.shape))
            layer.bias.copy_(state[f"{source}.bias"])
    return model


def to_torchvision(model: VGG) -> dict[str, torch.Tensor]:
    """The reverse export: a state dict that `torchvision.models.vgg11/13/16/19` loads as it is."""
    torchvision_config(model.config)
    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            state[f"features.{index}.weight"] = layer.weight.detach().clone()
            state[f"features.{index}.bias"] = layer.bias.detach().clone()
    for name, source in _CLASSIFIER.items():
        conv = getattr(model.head, name)
        state[f"{source}.weight"] = conv.weight.detach().flatten(1).clone()
        state[f"{source}.bias"] = conv.bias.detach().clone()
    return state

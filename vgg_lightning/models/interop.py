"""torchvision interop: its vgg11/13/16/19 are the paper's A/B/D/E, with the FC layers as `nn.Linear`; what
torchvision says of them (names, weight files, accuracy) in one table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .vgg import VGG, canonical_config, weight_layers


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
_CLASSIFIER = {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}


# torchvision's state dicts are told apart by their conv layers: the weight layers less the three FC
_CONFIG_BY_CONV_COUNT = {weight_layers(config) - 3: config for config in TORCHVISION_NAMES}


def _torchvision_config(config: str) -> str:
    config = canonical_config(config)
    if config not in TORCHVISION_NAMES:
        raise ValueError(
            f"torchvision has no VGG config {config}: it ships A, B, D and E only, choose model=A, B, D or E "
            f"({', '.join(f'{c}={n}' for c, n in TORCHVISION_NAMES.items())})"
        )
    return config


def torchvision_weights_path(config: str, weights_path: str | None = None) -> str:
    """weights_path, or torch's hub cache ($TORCH_HOME/hub/checkpoints): never a download."""
    name = TORCHVISION[_torchvision_config(config)].file
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = weights_path or os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"torchvision's weights for config {canonical_config(config)} are not at {path} (vgg-lightning never "
            f"downloads). Pass weights_path=/path/to/{name}, or put the file in {folder} "
            f"(it is https://download.pytorch.org/models/{name})"
        )
    return path


def _feature_keys(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """torchvision's conv weights, in network order (features.0, features.2, ... sorted numerically)."""
    keys = [k for k in state_dict if k.startswith("features.") and k.endswith(".weight")]
    return sorted(keys, key=lambda k: int(k.split(".")[1]))


def torchvision_config(state_dict) -> str | None:
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
    config = _torchvision_config(config)
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
    _torchvision_config(model.config)
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

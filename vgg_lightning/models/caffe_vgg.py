"""The authors' released nets as our `VGG`: `from_caffe("VGG_ILSVRC_16_layers.caffemodel", "D")` (and E).

What the released files take, and what is folded so that the net takes what our loaders give:

- Input. The authors' Caffe deploy takes a BGR image on the 0-255 scale minus the mean pixel, B 103.939,
  G 116.779, R 123.68 (the model zoo's README). Our loaders give RGB on the 0-255 scale and `data.normalize=paper`
  subtracts `paper.MEAN_RGB` = (123.68, 116.779, 103.939): the same mean, channel for channel, so nothing is
  folded for it. The channel order is folded into conv1_1: its weight's input channels are reversed (B, G, R ->
  R, G, B), so conv1_1(rgb - mean_rgb) equals the released conv1_1(bgr - mean_bgr) exactly (a permutation: no
  rounding). No scale: both are on 0-255.
- fc6 is stored as an InnerProduct, 4096 x 25088, over pool5 flattened as (C, H, W), the order of torch's
  flatten of NCHW: our fc6 (a 7x7 conv) is its view (4096, 512, 7, 7), which is what `score_map` and dense
  evaluation need. fc7 and fc8 are (4096, 4096) and (1000, 4096): our 1x1 convs.
- The 2014 files give legacy 4-D shapes ((1, 1, 4096, 25088) for fc6, (1, 1, 1, 64) for a bias): the same values.

Any layout the shapes allow is read, so a narrow file (a width multiplier) or an fc6 already stored as a conv
works too; a file of another config, or of other shapes, is refused naming the layer and both shapes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .caffe import CaffeModelError, read_net, read_prototxt
from .released import NORMALIZE, RELEASED, missing_file
from .tables import ALL_CONFIGS
from .vgg import VGG, canonical_config

__all__ = ["FOLDED", "NORMALIZE", "RELEASED", "config_of", "from_caffe", "weight_layer_names"]

# what `from_caffe` changed, for the net's `source`; the mean is left to the loader (the released one is ours)
FOLDED = f"{{first}}'s input channels reversed (BGR -> RGB); no mean or scale folded (data.normalize={NORMALIZE})"


def _meta_vgg(config: str, num_classes: int = 1000, width: float = 1.0) -> VGG:
    """A net of shapes only, on the meta device: no memory, no init work. Its init is thrown away; xavier's
    uniform_ has a meta kernel, the default normal_ goes through torch._refs (a one-time import of seconds)."""
    with torch.device("meta"):
        return VGG(config, num_classes=num_classes, width=width, init="xavier")


@functools.cache
def _full_width(config: str) -> tuple[tuple[str, ...], int]:
    """conv1_1 ... fc8 of `config` as Caffe names them, and conv1_1's outputs at width 1."""
    layers = _meta_vgg(config).conv_layers()
    return tuple(layers), next(iter(layers.values())).out_channels


def weight_layer_names(config: str) -> list[str]:
    return list(_full_width(config)[0])


def _configs_named_like(names: set[str]) -> list[str]:
    return [config for config in ALL_CONFIGS if set(weight_layer_names(config)) == names]


@functools.cache
def _kernels(config: str) -> dict[str, tuple[int, int]]:
    """The conv layers' kernel sizes of `config` (C's 1x1 convs are where D has 3x3 ones, under the same names)."""
    return {name: layer.kernel_size for name, layer in _meta_vgg(config).conv_layers().items() if name[:2] != "fc"}


def config_of(blobs: Mapping[str, Sequence[np.ndarray]], where: str = "the weights") -> str:
    """The config whose weight layers `blobs` are: by their names, then (C or D) by their kernels."""
    named = _configs_named_like(set(blobs))
    fitting = [c for c in named if all(_squeezed(blobs[n][0].shape)[-2:] == k for n, k in _kernels(c).items())]
    if len(fitting) != 1:
        what = f"config {' or '.join(named)}'s names, not their kernels" if named else "no config's of Table 1"
        raise CaffeModelError(f"{where}: its weight layers ({', '.join(blobs)}) are {what}")
    return fitting[0]


def _check_names(found: Sequence[str], config: str, where: str) -> None:
    """The file's weight layers are exactly the config's, or one line says which are missing or extra."""
    expected = weight_layer_names(config)
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing or extra:
        parts = ([f"no {', '.join(missing)}"] if missing else []) + ([f"extra {', '.join(extra)}"] if extra else [])
        likely = _configs_named_like(set(found))
        hint = f": its layers are config {' or '.join(likely)}'s" if likely else ""
        raise CaffeModelError(f"{where}: not config {config}'s weight layers ({'; '.join(parts)}){hint}")


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape without its leading 1s: the legacy (1, 1, 1, n) of a bias is (n,)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _fits(found: Sequence[int], expected: torch.Size) -> bool:
    """Same values in the same order: the shape itself, or (for an InnerProduct) its 2-D (out, in) view."""
    return _squeezed(found) in (_squeezed(expected), _squeezed((expected[0], expected[1:].numel())))


def _tensor(where: str, part: str, array: np.ndarray, target: nn.Parameter, config: str) -> torch.Tensor:
    if not _fits(array.shape, target.shape):
        raise CaffeModelError(
            f"{where}: config {config} needs a {part} of shape {tuple(target.shape)}, the file has {array.shape}"
        )
    return torch.from_numpy(np.array(array, dtype=np.float32).reshape(target.shape))  # a writable copy


def _check_prototxt(path: str | os.PathLike, config: str) -> None:
    """A deploy prototxt given with the weights must describe the same net: its weight layers and a 3-channel
    input."""
    deploy = read_prototxt(path)
    layers = [layer.name for layer in deploy.layers if layer.type in ("Convolution", "InnerProduct")]
    _check_names(layers, config, os.fspath(path))
    channels = {name: dims[1] for name, dims in deploy.inputs.items() if len(dims) == 4}
    if any(c != 3 for c in channels.values()):
        raise CaffeModelError(f"{path}: the input {channels} should have 3 channels (BGR) for config {config}")


def _read(weights, config: str | None) -> tuple[dict, dict, str]:
    """(blobs, where they came from, the file's name for messages) of a path or a dict of blobs."""
    if isinstance(weights, Mapping):
        return dict(weights), {}, "the weights"
    if not os.path.isfile(weights):
        raise FileNotFoundError(missing_file(weights, config))
    net = read_net(weights)
    # the caller drops the blobs layer by layer: peak memory stays near one copy of the weights
    return net.blobs(), {"format": "caffe", "net": net.name, **net.source}, os.fspath(weights)


def from_caffe(
    weights: str | os.PathLike | Mapping[str, Sequence[np.ndarray]],
    config: str | None = "D",
    *,
    prototxt: str | os.PathLike | None = None,
) -> VGG:
    """A `VGG` of `config` carrying a Caffe model's weights (a `.caffemodel` path, or `read_caffemodel`'s
    dict), with the BGR input folded into conv1_1: it takes RGB on 0-255 minus `paper.MEAN_RGB`
    (`data.normalize=paper`). Width and classes come from the file (conv1_1's outputs / 64, fc8's outputs).
    The authors' D and E take the mean pixel `paper.MEAN_RGB`; another Caffe net of a config whose shapes fit
    is read the same way, but its input is then for the user to check (Caffe nets often took a mean image).
    `config=None` takes the config the file's layers are (`config_of`). `prototxt`, a deploy file, is checked
    against the config when given. The net's `source` says where it came from (file, bytes, sha256, what was
    folded), for a checkpoint made from it to carry."""
    config = canonical_config(config) if config is not None else None
    blobs, source, where = _read(weights, config)
    config = config or config_of(blobs, where)
    _check_names(list(blobs), config, where)
    if prototxt is not None:
        _check_prototxt(prototxt, config)
    for name, layer_blobs in blobs.items():
        if len(layer_blobs) != 2:
            raise CaffeModelError(
                f"{where}: {name} has {len(layer_blobs)} blobs, config {config} needs 2 (weight, bias)"
            )
    first = weight_layer_names(config)[0]
    width = _squeezed(blobs[first][0].shape)[0] / _full_width(config)[1]
    num_classes = _squeezed(blobs["fc8"][1].shape)[0]
    model = _meta_vgg(config, num_classes, width)
    for name, layer in model.conv_layers().items():
        weight, bias = blobs.pop(name)
        if name == first:
            weight = np.asarray(weight)[:, ::-1]  # BGR -> RGB input channels
        layer.weight = nn.Parameter(_tensor(f"{where}: {name}", "weight", weight, layer.weight, config))
        layer.bias = nn.Parameter(_tensor(f"{where}: {name}", "bias", bias, layer.bias, config))
    model.source = {**source, "config": config, "folded": FOLDED.format(first=first)} if source else None
    return model

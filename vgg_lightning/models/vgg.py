"""VGG configurations A, A-LRN, B, C, D and E of Simonyan & Zisserman (ICLR 2015), Table 1.

The whole architecture is the table below, written as the paper writes it: "3-256 x2" is two 3x3 convs with
256 output channels, "1-256" a 1x1 conv, "LRN" a local response normalisation; a 2x2 max-pool ends every
block. One `VGG` class builds any row.

The three FC layers are stored as convolutions (fc6 a 7x7 conv on the 512-channel map, fc7 and fc8 1x1 convs,
as in timm's `ConvMlp`), so the fully-convolutional net of dense evaluation (`score_map`) and the classifier
of training (`forward`) are the same parameters, never two copies kept in sync.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#          block 1          block 2      block 3             block 4             block 5
TABLE_1: dict[str, tuple[str, ...]] = {
    "A":     ("3-64",         "3-128",     "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "A-LRN": ("3-64, LRN",    "3-128",     "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "B":     ("3-64 x2",      "3-128 x2",  "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "C":     ("3-64 x2",      "3-128 x2",  "3-256 x2, 1-256",   "3-512 x2, 1-512",   "3-512 x2, 1-512"),
    "D":     ("3-64 x2",      "3-128 x2",  "3-256 x3",          "3-512 x3",          "3-512 x3"),
    "E":     ("3-64 x2",      "3-128 x2",  "3-256 x4",          "3-512 x4",          "3-512 x4"),
}  # fmt: skip

CONFIGS: tuple[str, ...] = tuple(TABLE_1)
FC_WIDTH = 4096
HEAD_KERNEL = 7  # the last feature map of a 224x224 input is 7x7: fc6 sees all of it
INPUT_SIZE = 224
INIT_SCHEMES = ("gaussian", "xavier", "kaiming")


def canonical_config(name: str) -> str:
    """'d', 'a_lrn', 'A-LRN' -> the Table 1 name; anything else is a ValueError listing the choices."""
    key = str(name).strip().upper().replace("_", "-")
    if key not in TABLE_1:
        raise ValueError(f"unknown VGG config {name!r}: choose one of {', '.join(CONFIGS)} (paper Table 1)")
    return key


@dataclass(frozen=True)
class Layer:
    """One layer of a block as the table spells it: a conv of `kernel` x `kernel` with `channels`, or an LRN."""

    kind: str  # "conv" or "lrn"
    kernel: int = 0
    channels: int = 0


_CONV = re.compile(r"^(\d+)-(\d+)(?:\s*x(\d+))?$")


def parse_block(spec: str) -> list[Layer]:
    """'3-256 x2, 1-256' -> [conv 3x3 256, conv 3x3 256, conv 1x1 256]."""
    layers: list[Layer] = []
    for item in (part.strip() for part in spec.split(",")):
        if item == "LRN":
            layers.append(Layer("lrn"))
            continue
        match = _CONV.match(item)
        if match is None:
            raise ValueError(f"cannot read layer {item!r} of block {spec!r}")
        kernel, channels, repeat = int(match[1]), int(match[2]), int(match[3] or 1)
        layers += [Layer("conv", kernel, channels)] * repeat
    return layers


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def make_features(config: str, width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """The conv part, with Caffe's layer names (conv3_2, relu3_2, lrn1, pool3) so checkpoints read like the paper."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for block, spec in enumerate(TABLE_1[canonical_config(config)], start=1):
        index = 0
        for layer in parse_block(spec):
            if layer.kind == "lrn":
                # AlexNet's k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides alpha by n, hence 5e-4.
                layers[f"lrn{block}"] = nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)
                continue
            index += 1
            out_channels = scaled(layer.channels, width)
            layers[f"conv{block}_{index}"] = nn.Conv2d(
                in_channels, out_channels, layer.kernel, padding=layer.kernel // 2
            )
            layers[f"relu{block}_{index}"] = nn.ReLU(inplace=True)
            in_channels = out_channels
        layers[f"pool{block}"] = nn.MaxPool2d(2, 2)
    return nn.Sequential(layers)


class ConvHead(nn.Module):
    """FC-4096, ReLU, dropout, FC-4096, ReLU, dropout, FC-classes, stored as a 7x7 conv and two 1x1 convs.

    On a map exactly `kernel` wide (a 224x224 input) the convs are run as the matrix products they are
    (`F.linear` on flattened views of the same weights: faster, and bit-for-bit the paper's FC layers).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.fc6 = nn.Conv2d(in_channels, hidden, kernel)
        self.fc7 = nn.Conv2d(hidden, hidden, 1)
        self.fc8 = nn.Conv2d(hidden, num_classes, 1)
        self.dropout = nn.Dropout(dropout)

    def _layers(self):
        return ((self.fc6, True), (self.fc7, True), (self.fc8, False))

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.kernel:
            raise ValueError(
                f"feature map {tuple(x.shape[-2:])} is smaller than fc6's {self.kernel}x{self.kernel} kernel: "
                f"the input side must be at least {self.kernel * 32} pixels"
            )
        for conv, hidden in self._layers():
            x = conv(x)
            if hidden:
                x = self.dropout(F.relu(x, inplace=True))
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for conv, hidden in self._layers():
            x = F.linear(x, conv.weight.flatten(1), conv.bias)
            if hidden:
                x = self.dropout(F.relu(x, inplace=True))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.kernel, self.kernel):
            return self.logits(x)
        return self.score_map(x).mean(dim=(2, 3))


class VGG(nn.Module):
    """A Table 1 configuration. `forward` gives logits; `score_map` the fully-convolutional class score map."""

    def __init__(
        self,
        config: str = "D",
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.5,
        init: str = "gaussian",
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.config = canonical_config(config)
        self.num_classes = num_classes
        self.width = width
        self.features = make_features(self.config, width)
        last_channels = scaled(512, width)
        self.head = ConvHead(last_channels, num_classes, scaled(FC_WIDTH, width), HEAD_KERNEL, dropout)
        init_weights(self, init, init_std)

    def spec(self) -> dict:
        """What a checkpoint must match to be loaded into this net."""
        return {"config": self.config, "num_classes": self.num_classes, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes). On 224x224 input this is the paper's network exactly; on a larger input it
        is the spatial mean of the class score map (dense evaluation's scores before the softmax)."""
        return self.head(self.features(x))

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, num_classes, h, w) class scores of the fully-convolutional net, for any input side >= 224."""
        return self.head.score_map(self.features(x))

    def conv_layers(self) -> OrderedDict[str, nn.Conv2d]:
        """Every weight layer in order, named as in the paper (conv1_1 ... conv5_4, fc6, fc7, fc8)."""
        layers = OrderedDict((n, m) for n, m in self.features.named_children() if isinstance(m, nn.Conv2d))
        layers.update(fc6=self.head.fc6, fc7=self.head.fc7, fc8=self.head.fc8)
        return layers


def init_weights(model: VGG, scheme: str = "gaussian", std: float = 0.01) -> None:
    """`gaussian`: the paper's N(0, std) with zero biases; `xavier`: Glorot uniform, which the authors later
    found trains every config from scratch; `kaiming`: He normal. The FC layers are initialised through their
    2-D (out, in) views, so that fan-in and fan-out are those of the FC layers, not of a 7x7 conv."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    for name, layer in model.conv_layers().items():
        weight = layer.weight.data
        if name.startswith("fc"):
            weight = weight.view(weight.shape[0], -1)
        if scheme == "gaussian":
            nn.init.normal_(weight, 0.0, std)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(weight)
        else:
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)


def build_vgg(config: str, num_classes: int = 1000, width: float = 1.0, **kwargs) -> VGG:
    """Build a Table 1 configuration ('A', 'A-LRN', 'B', 'C', 'D', 'E'; case-insensitive, 'A_LRN' accepted).

    `width` multiplies every conv and FC width (1.0 is the paper; tests use narrow nets). Other keywords:
    `dropout` (0.5), `init` ('gaussian', 'xavier', 'kaiming') and `init_std` (0.01).
    """
    return VGG(config, num_classes=num_classes, width=width, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: VGG, side: int = INPUT_SIZE) -> int:
    """Multiply-adds x 2 of one forward pass at `side` x `side`, counted from the layer shapes."""
    flops, size = 0, side
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0]
            flops += 2 * module.in_channels * module.out_channels * k * k * size * size
        elif isinstance(module, nn.MaxPool2d):
            size //= 2
    out = size - model.head.kernel + 1
    for conv in (model.head.fc6, model.head.fc7, model.head.fc8):
        flops += 2 * conv.weight[0].numel() * conv.out_channels * out * out
    return flops


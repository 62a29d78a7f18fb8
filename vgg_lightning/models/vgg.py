"""VGG configurations A, A-LRN, B, C, D and E of Simonyan & Zisserman (ICLR 2015), Table 1, and the earlier,
faster VGG-F, VGG-M and VGG-S of Chatfield et al. ("Return of the Devil in the Details", BMVC 2014).

The whole architecture is the tables of `tables`, written as the papers write them: "3-256 x2" is two 3x3 convs with
256 output channels, "1-256" a 1x1 conv, "LRN" a local response normalisation; a 2x2 max-pool ends every
Table 1 block. The fast nets have one conv per block with strides, paddings and pools of their own, so their
cells say more (see `FAST_NETS`); the same parser reads both tables and one `VGG` class builds any row.

The three FC layers are stored as convolutions (fc6 a conv as wide as the last feature map of a 224x224
input: 7x7 for A-E, 6x6 for F/M/S; fc7 and fc8 1x1 convs, as in timm's `ConvMlp`), so the fully-convolutional
net of dense evaluation (`score_map`) and the classifier of training (`forward`) are the same parameters,
never two copies kept in sync.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .choices import INIT_SCHEMES, canonical_config, check_model_settings
from .tables import FAST_NETS, SHALLOW_NETS, TABLE_1

FC_WIDTH = 4096
INPUT_SIZE = 224
_TABLE_1_POOL = "pool2/2"  # implicit at the end of every Table 1 block


@dataclass(frozen=True)
class Layer:
    """One layer of a block as the table spells it: a conv of `kernel` x `kernel` with `channels`, an LRN, or a
    max-pool of `kernel` x `kernel`."""

    kind: str  # "conv", "lrn" or "pool"
    kernel: int = 0
    channels: int = 0
    stride: int = 1
    padding: int = 0


_CONV = re.compile(r"^(\d+)-(\d+)(?:/(\d+))?(?:\s*pad(\d+))?(?:\s*x(\d+))?$")
_POOL = re.compile(r"^pool(\d+)/(\d+)$")


def parse_block(spec: str) -> list[Layer]:
    """'3-256 x2, 1-256' -> [conv 3x3 256, conv 3x3 256, conv 1x1 256];
    '7-96/2 pad0, LRN, pool3/2' -> [conv 7x7 96 stride 2 padding 0, LRN, max-pool 3x3 stride 2]."""
    layers: list[Layer] = []
    for item in (part.strip() for part in spec.split(",")):
        if item == "LRN":
            layers.append(Layer("lrn"))
        elif match := _POOL.match(item):
            layers.append(Layer("pool", kernel=int(match[1]), stride=int(match[2])))
        elif match := _CONV.match(item):
            kernel, channels, stride = int(match[1]), int(match[2]), int(match[3] or 1)
            padding = kernel // 2 if match[4] is None else int(match[4])
            layers += [Layer("conv", kernel, channels, stride, padding)] * int(match[5] or 1)
        else:
            raise ValueError(f"cannot read layer {item!r} of block {spec!r}")
    return layers


def blocks(config: str) -> list[list[Layer]]:
    """The layers of each block of `config`, pools included (Table 1 leaves its 2x2 pools implicit)."""
    config = canonical_config(config)
    if config in FAST_NETS:
        return [parse_block(spec) for spec in FAST_NETS[config]]
    table = SHALLOW_NETS if config in SHALLOW_NETS else TABLE_1
    return [parse_block(f"{spec}, {_TABLE_1_POOL}") for spec in table[config]]


def weight_layers(config: str) -> int:
    """Table 1's depth: the conv layers plus the three FC layers (A 11, B 13, C and D 16, E 19; B-shallow 8)."""
    return sum(layer.kind == "conv" for block in blocks(config) for layer in block) + 3


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def make_features(config: str, width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """The conv part, with Caffe's layer names so checkpoints read like the papers: conv3_2, relu3_2, lrn1, pool3
    for Table 1; conv3, relu3, lrn1, pool5 for the fast nets (one conv per block, as in their prototxts)."""
    config = canonical_config(config)
    fast = config in FAST_NETS
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for block, block_layers in enumerate(blocks(config), start=1):
        index = 0
        for layer in block_layers:
            if layer.kind == "lrn":
                # AlexNet's k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides alpha by n, hence 5e-4.
                layers[f"lrn{block}"] = nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)
            elif layer.kind == "pool":
                # The fast nets' overlapping pools need Caffe's ceil rounding to give the 6x6 map of their fc6
                # (54 -> 27); A-E keep torchvision's floor, the same at 224 and at any multiple of 32.
                layers[f"pool{block}"] = nn.MaxPool2d(layer.kernel, layer.stride, ceil_mode=fast)
            else:
                index += 1
                name = f"{block}" if fast else f"{block}_{index}"
                out_channels = scaled(layer.channels, width)
                layers[f"conv{name}"] = nn.Conv2d(
                    in_channels, out_channels, layer.kernel, stride=layer.stride, padding=layer.padding
                )
                layers[f"relu{name}"] = nn.ReLU(inplace=True)
                in_channels = out_channels
    return nn.Sequential(layers)


def out_side(module: nn.Module, side: int) -> int:
    """PyTorch's output size of a conv or max-pool (Caffe's too), without running it; other layers keep it."""
    if not isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
        return side
    kernel, stride, padding = (v if isinstance(v, int) else v[0] for v in (module.kernel_size, module.stride, module.padding))  # fmt: skip
    span = side + 2 * padding - kernel
    if span < 0:
        return 0
    if not getattr(module, "ceil_mode", False):
        return span // stride + 1
    out = -(-span // stride) + 1
    # a last window that would start in the padding is dropped (PyTorch and Caffe alike)
    return out - 1 if (out - 1) * stride >= side + padding else out


def stage_sides(features: nn.Sequential, side: int) -> OrderedDict[str, int]:
    """The side of the map after every layer of `features` for a `side` x `side` input (0: the map is gone)."""
    sides: OrderedDict[str, int] = OrderedDict()
    for name, module in features.named_children():
        side = out_side(module, side)
        sides[name] = side
    return sides


def feature_side(features: nn.Sequential, side: int) -> int:
    """The side of the last feature map for a `side` x `side` input."""
    return next(reversed(stage_sides(features, side).values()))


def min_input_side(features: nn.Sequential, kernel: int) -> int:
    """The smallest input side whose last feature map is at least `kernel` wide (224 for A-E, less for F/M/S,
    whose ceil rounding and unpadded conv1 leave some slack)."""
    return next(side for side in range(1, INPUT_SIZE + 1) if feature_side(features, side) >= kernel)


class ConvHead(nn.Module):
    """FC-4096, ReLU, dropout, FC-4096, ReLU, dropout, FC-classes, stored as a `kernel` x `kernel` conv (7x7 for
    A-E, 6x6 for F/M/S) and two 1x1 convs.

    On a map exactly `kernel` wide (a 224x224 input) the convs are run as the matrix products they are
    (`F.linear` on flattened views of the same weights: faster, and bit-for-bit the paper's FC layers).
    """

    def __init__(
        self, in_channels: int, num_classes: int, hidden: int, kernel: int, dropout: float, min_side: int
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.min_side = min_side  # of the input image, for the error message
        self.fc6 = nn.Conv2d(in_channels, hidden, kernel)
        self.fc7 = nn.Conv2d(hidden, hidden, 1)
        self.fc8 = nn.Conv2d(hidden, num_classes, 1)
        self.dropout = nn.Dropout(dropout)

    def _layers(self):
        return ((self.fc6, True), (self.fc7, True), (self.fc8, False))

    def score_map(self, x: torch.Tensor, until_fc7: bool = False) -> torch.Tensor:
        """The class score map; with `until_fc7`, the fc7 map after its ReLU (fc8 left out: Appendix B's
        features)."""
        if min(x.shape[-2:]) < self.kernel:
            raise ValueError(
                f"feature map {tuple(x.shape[-2:])} is smaller than fc6's {self.kernel}x{self.kernel} kernel: "
                f"the input side must be at least {self.min_side} pixels"
            )
        for conv, hidden in self._layers()[: 2 if until_fc7 else 3]:
            x = conv(x)
            if hidden:
                x = self.dropout(F.relu(x, inplace=True))
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x, fc6 = _flat_alike(x, self.fc6.weight)
        for weight, (conv, hidden) in zip((fc6, None, None), self._layers()):
            x = F.linear(x, conv.weight.flatten(1) if weight is None else weight, conv.bias)
            if hidden:
                x = self.dropout(F.relu(x, inplace=True))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.kernel, self.kernel):
            return self.logits(x)
        return self.score_map(x).mean(dim=(2, 3))


def _flat_alike(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fc6's input map and its kernel as the (N, K) and (out, K) matrices of one matrix product, both flattened
    in the order the kernel is stored: (c, h, w), or (h, w, c) for a channels_last kernel (GPUSpeedups). The
    kernel (411 MB in fp32 for VGG-16) then flattens as a view, never copied, and neither is its gradient; the
    products are the same, summed in another order. A map stored otherwise than the kernel (small) is copied."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return x.permute(0, 2, 3, 1).flatten(1), weight.permute(0, 2, 3, 1).flatten(1)
    return x.flatten(1), weight.flatten(1)


class VGG(nn.Module):
    """A Table 1 configuration or a fast net (VGG-F/M/S). `forward` gives logits; `score_map` the
    fully-convolutional class score map."""

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
        last_conv = [m for m in self.features if isinstance(m, nn.Conv2d)][-1]
        # fc6 covers the whole last map of a 224x224 input, whatever the strides and pools made of it
        kernel = feature_side(self.features, INPUT_SIZE)
        hidden = scaled(FC_WIDTH, width)
        min_side = min_input_side(self.features, kernel)
        self.head = ConvHead(last_conv.out_channels, num_classes, hidden, kernel, dropout, min_side)
        init_weights(self, init, init_std)
        # where the weights came from when they were not trained here (`from_caffe` sets it: the file, its
        # sha256, what was folded), for a checkpoint made from the net to carry
        self.source: dict | None = None

    def spec(self) -> dict:
        """What a checkpoint must match to be loaded into this net."""
        return {"config": self.config, "num_classes": self.num_classes, "width": float(self.width)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes). On 224x224 input this is the paper's network exactly; on a larger input it
        is the spatial mean of the class score map (dense evaluation's scores before the softmax)."""
        return self.head(self.features(x))

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, num_classes, h, w) class scores of the fully-convolutional net, for any input side >= 224
        (`head.min_side`: a little less for F/M/S)."""
        return self.head.score_map(self.features(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4096, h, w): the fully-convolutional net up to fc7, after its ReLU, without fc8 (Appendix B's
        image features, before any pooling), for any input side >= 224. Same layers as `score_map`."""
        return self.head.score_map(self.features(x), until_fc7=True)

    def conv_layers(self) -> OrderedDict[str, nn.Conv2d]:
        """Every weight layer in order, named as in the paper (conv1_1 ... conv5_4, fc6, fc7, fc8; conv1 ... conv5,
        fc6, fc7, fc8 for the fast nets)."""
        layers = OrderedDict((n, m) for n, m in self.features.named_children() if isinstance(m, nn.Conv2d))
        layers.update(fc6=self.head.fc6, fc7=self.head.fc7, fc8=self.head.fc8)
        return layers


def init_weights(model: VGG, scheme: str = "gaussian", std: float = 0.01) -> None:
    """`gaussian`: the paper's N(0, std) with zero biases; `xavier`: Glorot uniform, which the authors later
    found trains every config from scratch; `kaiming`: He normal. The FC layers are initialised through their
    2-D (out, in) views, so that fan-in and fan-out are those of the FC layers, not of a 7x7 (6x6) conv."""
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
    """Build a Table 1 configuration ('A', 'A-LRN', 'B', 'C', 'D', 'E'; case-insensitive, 'A_LRN' accepted), Sec.
    4.1's 'B-shallow' (B with a 5x5 conv for each pair of 3x3 convs) or a fast net of Chatfield et al. ('VGG-F', 'VGG-M', 'VGG-S'; also 'vgg_f', 'vgg_m', 'vgg_s').

    `width` multiplies every conv and FC width (1.0 is the paper; tests use narrow nets). Other keywords:
    `dropout` (0.5), `init` ('gaussian', 'xavier', 'kaiming') and `init_std` (0.01).
    """
    return VGG(config, num_classes=num_classes, width=width, **kwargs)


# the settings of conf/model that shape the net (the rest, init_from, channels_last, ..., the training uses)
BUILD_KEYS = ("config", "width", "dropout", "init", "init_std")


def from_settings(model: Mapping, num_classes: int) -> VGG:
    """The net that a run's model settings (conf/model, as saved in its checkpoints) describe."""
    check_model_settings(model)
    return build_vgg(num_classes=num_classes, **{k: model[k] for k in BUILD_KEYS if k in model})


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: VGG, side: int = INPUT_SIZE) -> int:
    """FLOPs (multiply-adds x 2) of one forward pass at `side` x `side`, as torch's `FlopCounterMode` counts them:
    the counter the MFU convention uses, so our MFU figures mean what others' do. Convs and matrix products only
    (strides and pools shape the maps; biases, ReLUs and pools themselves cost nothing here).

    It runs a twin of `model` (same config, classes and width) built on the meta device: shapes only, so no
    compute and no memory, even for the full-width nets. The count depends on nothing else, and is cached per
    (config, num_classes, width, side), so the callback that asks every few steps pays for it once."""
    return _counted_flops(model.config, model.num_classes, model.width, side)


@functools.cache
def _counted_flops(config: str, num_classes: int, width: float, side: int) -> int:
    with torch.device("meta"):
        twin = VGG(config, num_classes, width)
        image = torch.empty(1, 3, side, side)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        twin(image)
    return int(counter.get_total_flops())

"""Warm starts (paper Sec. 3.1): `model.init_from=CKPT`.

Deep nets without batch norm do not learn from N(0, 0.01), so the paper trained A from random weights and
gave each deeper net "the first four convolutional layers and the last three fully-connected layers" of the
trained A, the layers between staying random. Which four convs of the deeper net receive A's is open; we use
the names, which are also the only places where the shapes fit:

    A's conv1_1 (3 -> 64)    -> conv1_1        A's fc6 (7x7x512 -> 4096) -> fc6
    A's conv2_1 (64 -> 128)  -> conv2_1        A's fc7 (4096 -> 4096)    -> fc7
    A's conv3_1 (128 -> 256) -> conv3_1        A's fc8 (4096 -> classes) -> fc8
    A's conv3_2 (256 -> 256) -> conv3_2

(conv1_2, conv2_2, conv3_3, ... keep `model.init`). A checkpoint of the same configuration (S=384 from
S=256, the jittered run from S=384) gives every layer.

Fine-tuning: a checkpoint trained on another number of classes gives every mapped layer but fc8, which keeps
`model.init` (a new classifier for the new classes).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping

import torch

from .vgg import VGG, canonical_config

log = logging.getLogger(__name__)

WARM_START_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


class WarmStartError(ValueError):
    """A checkpoint that cannot initialise this net; the message names the layer and the reason."""


def layer_mapping(source_config: str, target: VGG, source_classes: int | None = None) -> OrderedDict[str, str]:
    """target layer -> the checkpoint's layer it is copied from (no fc8 from a net of another class count)."""
    if canonical_config(source_config) == target.config:
        names = list(target.conv_layers())
    else:
        names = [name for name in target.conv_layers() if name in WARM_START_LAYERS]
    if source_classes not in (None, target.num_classes):
        names.remove("fc8")
    return OrderedDict((name, name) for name in names)


def checkpoint_layers(state_dict: dict) -> dict[str, dict[str, torch.Tensor]]:
    """{'conv3_2': {'weight': ..., 'bias': ...}, 'fc6': ...} from a VGG's state dict."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] in ("features", "head"):
            layers.setdefault(parts[1], {})[parts[2]] = value
    return layers


def _mismatch(name: str, source: str, part: str, found: torch.Size, target: VGG, saved: Mapping) -> WarmStartError:
    expected = tuple(getattr(target.conv_layers()[name], part).shape)
    reasons = []
    if name == "fc8" and saved.get("num_classes") not in (None, target.num_classes):
        reasons.append(
            f"the checkpoint was trained on {saved['num_classes']} classes, this run has {target.num_classes}"
        )
    width = float(saved.get("width", 1.0))
    if width != float(target.width):
        reasons.append(f"the checkpoint's net has model.width={width}, this run {target.width}")
    why = "; ".join(reasons) or "the layers have different shapes"
    return WarmStartError(
        f"cannot warm-start {name} of config {target.config} from the checkpoint's {source}: its {part} has shape "
        f"{tuple(found)}, {name} needs {expected} ({why})"
    )


def warm_start(net: VGG, state_dict: Mapping, source: Mapping, path: str = "<checkpoint>") -> OrderedDict[str, str]:
    """Copy the mapped layers of a trained VGG (its state dict, and its `spec()`: config, num_classes, width)
    into `net`, leaving the others as initialised; every layer is checked before any is copied. Returns and
    logs the mapping."""
    source_config = source["config"]
    mapping = layer_mapping(source_config, net, source.get("num_classes"))
    layers, targets = checkpoint_layers(state_dict), net.conv_layers()
    for name, source_name in mapping.items():
        if source_name not in layers:
            raise WarmStartError(
                f"cannot warm-start {name} of config {net.config}: {path!r} has no layer {source_name}"
            )
        for part in ("weight", "bias"):
            found = layers[source_name][part].shape
            if found != getattr(targets[name], part).shape:
                raise _mismatch(name, source_name, part, found, net, source)
    with torch.no_grad():
        for name, source_name in mapping.items():
            targets[name].weight.copy_(layers[source_name]["weight"])
            targets[name].bias.copy_(layers[source_name]["bias"])
    kept = [name for name in targets if name not in mapping]
    new_head = "fc8" not in mapping and source.get("num_classes") not in (None, net.num_classes)
    log.info(
        "warm start of %s from %s (config %s): %s; left as initialised: %s%s",
        net.config,
        path,
        canonical_config(source_config),
        ", ".join(f"{n} <- {s}" for n, s in mapping.items()),
        ", ".join(kept) or "none",
        f" (fc8: a new {net.num_classes}-class layer, the checkpoint's has {source['num_classes']} classes)"
        if new_head
        else "",
    )
    return mapping

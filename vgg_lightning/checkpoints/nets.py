"""The nets a task uses: those our checkpoints hold (rebuilt from their own settings), or torchvision's
vgg11/13/16/19 read from a file, never downloaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..models import VGG, from_settings, from_torchvision, torchvision_weights_path
from .files import needed_weights
from .read import check_checkpoint, read_checkpoint, read_vgg_checkpoint

NET_PREFIX = "net."  # VGGClassifier keeps its VGG as `self.net`


def net_state(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The bare VGG's state dict inside a VGGClassifier checkpoint."""
    state = checkpoint["state_dict"]
    return {k.removeprefix(NET_PREFIX): v for k, v in state.items() if k.startswith(NET_PREFIX)}


def net_from_checkpoint(checkpoint: Mapping) -> tuple[VGG, object]:
    """The net of a checked vgg-lightning checkpoint (see `read_vgg_checkpoint`), and its training S."""
    hparams = checkpoint["hyper_parameters"]
    net = from_settings(hparams["model"], hparams["num_classes"])
    net.load_state_dict(net_state(checkpoint))
    return net, hparams.get("train_scale")


def torchvision_net(
    config: str, weights: str = "torchvision", weights_path: str | None = None, normalize: str | None = None
) -> tuple[VGG, str]:
    """`weights=torchvision`: torchvision's vgg11/13/16/19 for model=A|B|D|E, and the file it came from. Its
    nets expect torchvision's own input scaling (`normalize`)."""
    if weights != "torchvision":
        raise ValueError(f"weights={weights!r}: the only choice is torchvision (or ckpt_path=... for our own)")
    if normalize != "torchvision":
        raise ValueError("torchvision's weights expect its mean/std input scaling: add data.normalize=torchvision")
    path = torchvision_weights_path(config, weights_path)
    return from_torchvision(read_checkpoint(path), config), path


def checked_checkpoints(
    paths: Sequence[str],
    model: Mapping,
    num_classes: int | None = None,
    keys: tuple[str, ...] = ("config", "width"),
    task: str = "eval",
) -> list[dict]:
    """The checkpoints of a task's nets (ckpt_path, then an ensemble's), read once each and checked. A single
    net must be the one this run names in `keys` (what the command line gave; the rest comes from the
    checkpoint); an ensemble may mix configs (D+E)."""
    needed_weights(paths, task)
    if len(paths) == 1:
        return [check_checkpoint(paths[0], model, num_classes, keys=keys)]
    return [read_vgg_checkpoint(path, num_classes) for path in paths]

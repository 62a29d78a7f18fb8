"""The nets a task uses: those our checkpoints hold (rebuilt from their own settings), and released weights read
from their files, never downloaded: torchvision's vgg11/13/16/19 and the authors' Caffe D and E. A released net
carries where it came from (`VGG.source`: the file, its size and sha256, what was folded)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..models import (
    VGG,
    from_caffe,
    from_settings,
    from_torchvision,
    torchvision_state_config,
)
from ..models.released import RELEASED
from .files import CheckpointError
from .read import check_checkpoint, read_checkpoint, read_vgg_checkpoint
from .weights import CHECKPOINT, KINDS, OURS, MissingWeights, NamedNet, check_input_scaling, torchvision_file

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


def file_source(path: str, kind: str, config: str) -> dict:
    """A released file as `VGG.source` records it (models.caffe_vgg says the same of a Caffe file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return {"format": kind, "file": os.path.basename(path), "bytes": os.path.getsize(path),
            "sha256": digest.hexdigest(), "config": config}  # fmt: skip


def torchvision_net(
    config: str, weights: str = "torchvision", weights_path: str | None = None, normalize: str | None = OURS
) -> tuple[VGG, str]:
    """`weights=torchvision`: torchvision's vgg11/13/16/19 for model=A|B|D|E, and the file it came from. Its
    nets expect torchvision's own input scaling (`normalize`)."""
    if weights != "torchvision":
        raise ValueError(f"weights={weights!r}: the only choice is torchvision (or ckpt_path=... for our own)")
    check_input_scaling("torchvision", normalize)
    path = torchvision_file(config, weights_path)
    return _torchvision_file(path, read_checkpoint(path), config), path


def _torchvision_file(path: str, state: Mapping, config: str) -> VGG:
    net = from_torchvision(state, config)
    net.source = file_source(path, "torchvision", net.config)
    return net


@dataclass(frozen=True)
class TaskNet:
    """A net a task uses, with what its file says of it."""

    net: VGG
    path: str  # its weights' file
    kind: str  # CHECKPOINT (ours), "caffe" or "torchvision"
    train_scale: object = None  # S it was trained at (results.json's train_scale); None: not known
    checkpoint: Mapping | None = None  # ours: its classes, input scaling and Q; None for released weights


def _released(named: NamedNet, normalize: str) -> TaskNet:
    """weights=caffe|torchvision's net (of model's config), or an ensemble's Caffe file (of its own config)."""
    if named.kind == "torchvision":
        net, path = torchvision_net(named.config, "torchvision", named.path, normalize)
        return TaskNet(net, path, "torchvision", KINDS["torchvision"].train_scale)
    check_input_scaling("caffe", normalize, named.label)
    try:
        net = from_caffe(named.path, named.config)
    except FileNotFoundError as error:
        raise MissingWeights(str(error)) from None
    released = net.config in RELEASED  # the authors' D or E: trained with scale jittering
    return TaskNet(net, named.path, "caffe", KINDS["caffe"].train_scale if released else None)


def _from_file(path: str, model: Mapping, num_classes: int | None, keys, normalize: str) -> TaskNet:
    """A checkpoint of ours, or torchvision's file named in an ensemble (told apart by what it holds). `keys`:
    what a single net must match of the run's model settings (None: a member of an ensemble)."""
    content = read_checkpoint(path)
    config = torchvision_state_config(content)
    if config is not None:
        check_input_scaling("torchvision", normalize, path)
        return TaskNet(_torchvision_file(path, content, config), path, "torchvision")
    if keys is None:
        checkpoint = read_vgg_checkpoint(path, num_classes)
    else:
        checkpoint = check_checkpoint(path, model, num_classes, keys=keys)
    net, scale = net_from_checkpoint(checkpoint)
    return TaskNet(net, path, CHECKPOINT, scale, checkpoint)


def task_nets(
    named: Sequence[NamedNet],
    model: Mapping,
    num_classes: int | None = None,
    keys: tuple[str, ...] = ("config", "width"),
    normalize: str = OURS,
) -> list[TaskNet]:
    """The nets `checkpoints.weights.named_nets` names, read and checked. A single checkpoint must be the net the
    run names in `keys` (what the command line gave; the rest comes from the checkpoint); an ensemble may mix
    configs (D+E) and kinds. Released nets must take `normalize`, and every net must have the data's
    `num_classes` (None: any)."""
    nets = []
    for item in named:
        if item.kind == CHECKPOINT:
            nets.append(_from_file(item.path, model, num_classes, keys if len(named) == 1 else None, normalize))
        else:
            nets.append(_released(item, normalize))
    for used in nets:
        if num_classes is not None and used.net.num_classes != num_classes:
            raise CheckpointError(f"{used.path}: its net has {used.net.num_classes} classes, the data {num_classes}")
    return nets

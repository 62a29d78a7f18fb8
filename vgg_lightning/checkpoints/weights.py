"""Released weights in place of a checkpoint of ours: torchvision's vgg11/13/16/19 (`weights=torchvision`, their file
in torch's hub cache or `weights_path=`) and the authors' Caffe nets (`weights=caffe weights_path=...`, or a
`.caffemodel` in an ensemble). What each takes as input (`data.normalize` follows `weights=`), which files a
task's nets come from, in order, and the checks of both. (The nets themselves: `checkpoints.nets`.)"""

# torch-free: the app refuses a wrong value or a missing file before it pays for importing torch

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..models import canonical_config, released, torchvision_weights_path
from .files import CheckpointError, existing_checkpoint


class MissingWeights(CheckpointError, FileNotFoundError):
    """A weights file that is not there: one line naming what to download and where from."""


@dataclass(frozen=True)
class WeightsKind:
    """What released weights of one kind take and were made with."""

    normalize: str  # the input scaling their nets take (data.normalize)
    test_scale: int  # Q when a run gives none (task=predict)
    train_scale: tuple[int, int] | None  # S, as results.json records it; None: not the paper's recipe
    nets: str  # what they are, in messages


KINDS = {
    # torchvision's val transform: Resize(256), its mean/std
    "torchvision": WeightsKind("torchvision", 256, None, "torchvision's nets"),
    "caffe": WeightsKind(released.NORMALIZE, released.TEST_SCALE, released.TRAIN_SCALE, "the released Caffe nets"),
}
OURS = "paper"  # the input scaling of nets trained here, unless a run says otherwise
CAFFE_SUFFIX = ".caffemodel"
CHECKPOINT = "checkpoint"  # a NamedNet of ours (or, in an ensemble, torchvision's file: told apart when read)


def input_scaling(weights: str | None) -> str:
    """data.normalize's default (`${weights_normalize:${weights}}` in conf/data): what the nets of `weights=`
    take, so that `weights=caffe` or `weights=torchvision` needs nothing more."""
    kind = KINDS.get(weights)  # an unknown name is refused by `weights_kind`, in the task's check
    return kind.normalize if kind else OURS


def weights_kind(weights: str) -> WeightsKind:
    if weights not in KINDS:
        raise ValueError(f"weights={weights!r}: choose one of {', '.join(KINDS)} (or ckpt_path=... for a checkpoint)")
    return KINDS[weights]


def check_input_scaling(kind: str, normalize: str, what: str | None = None) -> None:
    """Released nets see the input they were trained on, or the run is refused naming both scalings (`what`:
    how the command line named the nets)."""
    wanted = weights_kind(kind).normalize
    if normalize != wanted:
        raise ValueError(
            f"{what or f'weights={kind}'}: {KINDS[kind].nets} take data.normalize={wanted}, not "
            f"data.normalize={normalize} (data.normalize follows weights=: remove the data.normalize={normalize} that "
            "the command line or the experiment sets)"
        )


def torchvision_file(config: str, weights_path: str | None) -> str:
    """torchvision's file of `config`: `weights_path`, or torch's hub cache; refused in one line when missing,
    saying where it must be and how to get it (never downloaded)."""
    try:
        return torchvision_weights_path(config, weights_path)
    except FileNotFoundError as error:
        raise MissingWeights(str(error)) from None


def is_caffe_model(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(CAFFE_SUFFIX)


@dataclass(frozen=True)
class NamedNet:
    """One net a task uses, as its command line names it."""

    kind: str  # CHECKPOINT, "caffe" or "torchvision"
    path: str | None  # None: torchvision's file in torch's hub cache
    config: str | None = None  # the config it must be (weights=: model's); None: an ensemble's, the file's own

    @property
    def label(self) -> str:
        """How the command line named it, for messages."""
        return f"weights={self.kind}" if self.config else str(self.path)


def named_nets(
    weights: str | None,
    weights_path: str | None,
    ckpt_path: str | None,
    ensemble: Sequence[str] | str | None,
    config: str,
    task: str = "eval",
) -> list[NamedNet]:
    """The nets a task uses, in order: `weights=`'s (model's config) or ckpt_path's, then its ensemble's
    (`eval.ensemble`, `features.ensemble`): a Caffe model by its `.caffemodel` name, anything else our checkpoint
    or torchvision's file (told apart when read). Refused when there are none, or two first ones."""
    key = "features.ensemble" if task == "features" else "eval.ensemble"
    if weights and ckpt_path:
        raise ValueError(f"weights={weights} and ckpt_path={ckpt_path} both name the net: give one (more go in {key})")
    config = canonical_config(config)
    first = []
    if weights:
        weights_kind(weights)
        if weights == "caffe" and not weights_path:
            raise MissingWeights(f"weights=caffe needs its file, weights_path=...: {released.where_to_get(config)}")
        first = [NamedNet(weights, str(weights_path) if weights_path else None, config)]
    # a .caffemodel where a checkpoint is named (ckpt_path=, an ensemble) is a Caffe net of its own config
    others = [ensemble] if isinstance(ensemble, str) else ensemble or []  # one file given alone: ensemble=b.ckpt
    named = [p for p in [ckpt_path if not weights else None, *others] if p]
    nets = first + [NamedNet("caffe" if is_caffe_model(p) else CHECKPOINT, str(p)) for p in named]
    if not nets:
        raise CheckpointError(
            f"task={task} needs the weights to use: ckpt_path=<run dir>/checkpoints/last.ckpt, an ensemble "
            f"{key}=[a.ckpt,b.ckpt], or released weights: model=D weights=torchvision, or weights=caffe "
            f"weights_path={released.RELEASED['D'].file}"
        )
    return nets


def run_nets(cfg: Mapping, ensemble: Sequence[str] | str | None, task: str) -> list[NamedNet]:
    """`named_nets` of an eval, predict or features run: its weights=, weights_path=, ckpt_path= and model's
    config, and its ensemble (`eval.ensemble`, `features.ensemble`)."""
    return named_nets(cfg.get("weights"), cfg.get("weights_path"), cfg.get("ckpt_path"), ensemble,
                      cfg["model"]["config"], task)  # fmt: skip


def check_named_nets(nets: Sequence[NamedNet], normalize: str) -> None:
    """Refuse, before any work, a named file that is not there (a Caffe one naming what to download) and
    released nets whose input scaling is not the run's."""
    for net in nets:
        if net.kind == CHECKPOINT:
            existing_checkpoint(net.path)
            continue
        check_input_scaling(net.kind, normalize, net.label)
        if net.kind == "caffe" and not os.path.isfile(net.path):
            raise MissingWeights(released.missing_file(net.path, net.config))
        if net.kind == "torchvision":
            torchvision_file(net.config, net.path)

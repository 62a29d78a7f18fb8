"""Checkpoint files read back: loaded safely (tensors and plain data only, never code) and checked against the
run before any work; `ckpt_path=last` resolved to the newest state. (The nets they hold: `checkpoints.nets`.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..models import settings_spec
from .files import CheckpointError, existing_checkpoint, last_checkpoint
from .header import check_net

log = logging.getLogger(__name__)


def read_checkpoint(path: str) -> dict:
    """A checkpoint (or weights file) as torch.load gives it, with `weights_only=True`: tensors and plain
    Python data only, so a crafted file cannot run code. Our own checkpoints hold nothing else."""
    existing_checkpoint(path)
    try:
        try:  # mmap: only the parts we look at are read, however large the optimiser state
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as error:  # a legacy (non-zip) file cannot be mapped: read it whole, as safely
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(
                f"refusing {path!r}: it holds Python objects other than tensors and plain data, which loading "
                f"would execute (torch.load weights_only=True: {str(error).splitlines()[0]})"
            ) from error
        raise CheckpointError(f"cannot read checkpoint {path!r} (corrupt, or not a checkpoint): {error}") from error


def read_vgg_checkpoint(path: str, num_classes: int | None = None) -> dict:
    """A vgg-lightning checkpoint (its hyper-parameters rebuild its net), refused before any work when it is
    not one, or when its net has another number of classes than the data."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    if not isinstance(hparams, Mapping) or "config" not in (hparams.get("model") or {}):
        raise CheckpointError(f"{path!r} is not a vgg-lightning checkpoint (no model settings inside)")
    if num_classes is not None and hparams.get("num_classes") != num_classes:
        raise CheckpointError(
            f"{path!r} was trained on {hparams.get('num_classes')} classes, the data has {num_classes}"
        )
    return checkpoint


def checkpoint_spec(checkpoint: Mapping) -> dict:
    """config, num_classes and width of a checked checkpoint's net (`VGG.spec()` of the net it rebuilds)."""
    hparams = checkpoint["hyper_parameters"]
    return settings_spec(hparams["model"], hparams["num_classes"])


def check_checkpoint(
    path: str, model: Mapping, num_classes: int | None = None, keys: tuple[str, ...] = ("config", "width")
) -> dict:
    """Refuse, before any work, a checkpoint whose net differs from the one this run asks for in `keys` (a task
    that takes its net from the checkpoint asks only for what its command line gave); returns it."""
    checkpoint = read_vgg_checkpoint(path, num_classes)
    check_net(path, checkpoint["hyper_parameters"], model, keys)
    return checkpoint


def checkpoint_classes(checkpoint: Mapping) -> list[str]:
    """The class names a checked checkpoint was trained on (its data's, see `data.classes`); a checkpoint of
    an older version, which kept none, has its labels' numbers."""
    hparams = checkpoint["hyper_parameters"]
    return list(hparams.get("classes") or map(str, range(hparams["num_classes"])))


def recorded_progress(path: Path) -> tuple[int, int] | None:
    """(global step, epoch) a checkpoint says it holds; None when it cannot be read."""
    try:
        checkpoint = read_checkpoint(str(path))
        return int(checkpoint.get("global_step", -1)), int(checkpoint.get("epoch", -1))
    except (CheckpointError, AttributeError, TypeError, ValueError) as error:
        log.warning("ckpt_path=last: ignoring %s (%s)", path, error)
        return None


def resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """ckpt_path=last means the newest state of this run among its checkpoints/last*.ckpt (last.ckpt, the
    Ctrl-C save) and the checkpoints Lightning saves on SLURM's SIGUSR1 (hpc_ckpt_N.ckpt): newest by the step
    and epoch recorded inside (a copied dir's mtimes say nothing); when there is none yet, start fresh and say
    so. The log names the file and step restored."""
    if ckpt_path != "last":
        return ckpt_path
    run_dir = Path(run_dir)
    folder = last_checkpoint(run_dir).parent
    candidates = sorted(p for p in (*folder.glob("last*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file())
    found = {path: progress for path in candidates if (progress := recorded_progress(path)) is not None}
    if not found:
        log.info("ckpt_path=last: no checkpoint in %s yet, starting fresh", folder)
        return None
    newest = max(found, key=lambda path: (*found[path], path.stat().st_mtime))
    step, epoch = found[newest]
    log.info("ckpt_path=last: resuming from %s (step %d, epoch %d)", newest, step, epoch)
    return str(newest)

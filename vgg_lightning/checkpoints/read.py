"""Checkpoint files read back: loaded safely (tensors and plain data only, never code) and checked against the
run before any work; `ckpt_path=last` resolved to the newest state. (The nets they hold: `checkpoints.nets`.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..models import settings_spec
from . import unpickle
from .files import CheckpointError, existing_checkpoint, last_checkpoint, refusing
from .header import check_net

log = logging.getLogger(__name__)


def read_checkpoint(path: str) -> dict:
    """A checkpoint (or weights file) as torch.save wrote it, built by our restricted unpickler: tensors and plain
    Python data only, so a crafted file cannot run code (`checkpoints.unpickle`). Every checkpoint the package or
    Lightning reads comes through here."""
    existing_checkpoint(path)
    try:
        return unpickle.load(path)
    except CheckpointError as error:
        raise refusing(path, error) from None


def nonfinite(tensors: Mapping) -> list[str]:
    """The names of the floating-point tensors of `tensors` that hold a NaN or an infinity (reads the device:
    for a checkpoint being written or read, not inside a training step)."""
    return [
        name
        for name, t in tensors.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def read_vgg_checkpoint(path: str, num_classes: int | None = None) -> dict:
    """A vgg-lightning checkpoint (its hyper-parameters rebuild its net), refused before any work when it is
    not one, when its weights are not finite (a diverged run's), or when its net has another number of classes
    than the data."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    if not isinstance(hparams, Mapping) or "config" not in (hparams.get("model") or {}):
        raise CheckpointError(f"{path!r} is not a vgg-lightning checkpoint (no model settings inside)")
    bad = nonfinite(checkpoint.get("state_dict") or {})
    if bad:
        raise CheckpointError(
            f"{path!r} holds weights that are not finite ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the "
            "run that wrote it diverged; use a checkpoint from before it"
        )
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


def recorded_progress(path: Path, checkpoint: Mapping | None = None) -> tuple[int, int]:
    """(global step, epoch) a checkpoint says it holds (`checkpoint`: its content, already read); CheckpointError
    when it cannot be read."""
    checkpoint = read_checkpoint(str(path)) if checkpoint is None else checkpoint
    try:
        return int(checkpoint.get("global_step", -1)), int(checkpoint.get("epoch", -1))
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(f"{str(path)!r} is not a training checkpoint (no step and epoch inside)") from None


def check_not_past(path: str, checkpoint: Mapping, max_epochs: int | None) -> None:
    """Lightning refuses, with a traceback, to resume a state past `trainer.max_epochs`: said here, before any
    work, in one line (`checkpoint`: the content of `path`, already read)."""
    if max_epochs is None or max_epochs == -1:
        return
    step, epoch = recorded_progress(Path(path), checkpoint)
    if epoch > max_epochs:  # Lightning's own test (checkpoint_connector.restore_loops)
        raise CheckpointError(
            f"{path} holds the state of epoch {epoch} (step {step}), past trainer.max_epochs={max_epochs}: pass "
            f"trainer.max_epochs={epoch + 1} or more to train it on, or test it with task=eval ckpt_path={path}"
        )


def resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """ckpt_path=last means the newest state of this run among its checkpoints/last*.ckpt (last.ckpt, the
    interrupted run's last-interrupted.ckpt) and the checkpoints older versions saved on SLURM's SIGUSR1
    (hpc_ckpt_N.ckpt): newest by the step and epoch recorded inside (a copied dir's mtimes say nothing); when
    there is none yet, start fresh and say so. A file that cannot be read is passed over, named; when every one
    is, the run is refused (starting fresh would overwrite them). The log names the file and step restored."""
    if ckpt_path != "last":
        return ckpt_path
    run_dir = Path(run_dir)
    folder = last_checkpoint(run_dir).parent
    candidates = sorted(p for p in (*folder.glob("last*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file())
    if not candidates:
        log.info("ckpt_path=last: no checkpoint in %s yet, starting fresh", folder)
        return None
    found, refused = {}, {}
    for path in candidates:
        try:
            found[path] = recorded_progress(path)
        except CheckpointError as error:
            refused[path] = getattr(error, "reason", str(error))
    if not found:  # starting afresh would overwrite them: the user decides
        names = ", ".join(str(path.relative_to(run_dir)) for path in candidates)
        reasons = "; ".join(f"{path.name}: {reason}" for path, reason in refused.items())
        raise CheckpointError(
            f"ckpt_path=last: {names} in {run_dir} cannot be read ({reasons}), so there is no state to resume. "
            "Resume from another file with ckpt_path=<checkpoint>, or start afresh without ckpt_path=last and with "
            "move_aside=true (the old files are kept)"
        )
    for path, reason in refused.items():
        log.warning("ckpt_path=last: passing over %s (%s)", path, reason)
    newest = max(found, key=lambda path: (*found[path], path.stat().st_mtime))
    step, epoch = found[newest]
    log.info("ckpt_path=last: resuming from %s (step %d, epoch %d)", newest, step, epoch)
    return str(newest)

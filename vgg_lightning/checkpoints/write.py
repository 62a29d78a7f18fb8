"""How checkpoints are written: atomically (a kill never leaves half a file), in the background while training
goes on, last.ckpt always the last state, one on Ctrl-C, and the random state Lightning does not save."""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from ..compat import (
    checkpoint_defers_until_validation,
    checkpoint_saves_on_train_epoch_end,
    last_saved_step,
    save_last_checkpoint,
)
from ..errors import file_system_error
from .files import PARTIAL

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a staging file beside the target, then rename: a kill during the write leaves the previous
    checkpoint intact, never half a file. Lightning's own save stages in $TMPDIR (fsspec's transaction):
    a full /tmp fails the save although the run dir has room, and a kill leaves the copy there. The staging
    name (`.partial-<pid>-<n>`) holds neither "ckpt_" nor "last", so no Lightning rule (the hpc_ckpt_N
    versions, last-v1) ever reads it; what a killed save leaves is removed at the next start
    (`run_dir.remove_partial_saves`)."""

    _saves = itertools.count()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        path = os.fspath(path)
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        staging = os.path.join(folder, f"{PARTIAL}{os.getpid()}-{next(self._saves)}")
        try:
            with open(staging, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, path)
        except Exception as error:
            # a full disk reaches torch's zip writer as a RuntimeError ("unexpected pos"): say which file
            cause = file_system_error(error)
            if cause is None:
                raise
            raise OSError(cause.errno, cause.strerror, path) from error
        finally:
            if os.path.exists(staging):
                os.remove(staging)


class BackgroundCheckpointIO(AsyncCheckpointIO):
    """Lightning's AsyncCheckpointIO around AtomicCheckpointIO: the saves ModelCheckpoint makes while training
    goes on (every epoch a best and a last.ckpt, ~1 GB each for VGG-16 with its momentum) are copied on the
    training thread (on a GPU, a copy at memory speed: later steps cannot change what is written) and written by
    one thread behind it, in the order asked; training does not wait for the disk.
    - Only the saves made `in_background()` (PreemptibleCheckpoint's) go behind. Any other save (Lightning's SLURM
      requeue checkpoint, which a requeue follows at once; the Ctrl-C one; trainer.save_checkpoint by hand) is on
      disk when it returns, after the saves queued before it.
    - A removal (ModelCheckpoint's older best) takes its turn behind the queued saves, so a file removed is never
      written afterwards; a read waits for them all.
    - Lightning waits for the queue when fit ends, also on an exception or Ctrl-C (strategy teardown); a kill
      while a save is being written leaves the previous file (the write is atomic).
    - A save that fails (a full disk) stops the run at the next training step (`raise_failure`), naming the
      file; the previous one stays as it was."""

    def __init__(self, checkpoint_io=None) -> None:
        super().__init__(checkpoint_io or AtomicCheckpointIO())
        self._background = False

    @contextmanager
    def in_background(self) -> Iterator[None]:
        self._background, before = True, self._background
        try:
            yield
        finally:
            self._background = before

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if self._background:
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        else:
            self.wait()
            self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def remove_checkpoint(self, path) -> None:
        if self._executor is None:
            self.checkpoint_io.remove_checkpoint(path)
        else:
            self._executor.submit(self._remove_in_turn, path)

    def _remove_in_turn(self, path) -> None:
        try:
            self.checkpoint_io.remove_checkpoint(path)
        except BaseException as error:  # raised on the training thread at the next save, wait or teardown
            self._error = error

    def load_checkpoint(self, *args, **kwargs) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(*args, **kwargs)

    def wait(self) -> None:
        """Return when every save and removal asked for so far is done (raising the first error of one)."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result()
        self.raise_failure()

    def raise_failure(self) -> None:
        """The error of a save that failed behind training (a full disk), raised now: Lightning would raise it
        only at the next save, an epoch of training later."""
        if self._error:
            raise self._error


def in_background(trainer):
    """The context in which the trainer's checkpoint saves go behind training (see BackgroundCheckpointIO)."""
    io = trainer.strategy.checkpoint_io
    return io.in_background() if isinstance(io, BackgroundCheckpointIO) else nullcontext()


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Lightning's on-exception checkpoint, written on Ctrl-C only (a crash's state is not one to resume
    from), as `checkpoints/last-interrupted.ckpt`: `ckpt_path=last` picks it when it is the newest state.
    Lightning removes it when a later fit ends normally."""

    def on_exception(self, trainer, *args, **kwargs) -> None:
        exception = next((a for a in (*args, *kwargs.values()) if isinstance(a, BaseException)), None)
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit":
            super().on_exception(trainer, *args, **kwargs)
            log.warning("interrupted: the state at step %d is in %s (resume: ckpt_path=last)", trainer.global_step,
                        self.ckpt_path)  # fmt: skip


class PreemptibleCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `last.ckpt` always the last state:
    - Lightning 2.6 rewrites last.ckpt only when a top-k checkpoint is saved, so after an epoch that did not
      improve the val error, "last" would be the best epoch's weights: a resume would go back in time, and
      the reproduction chain would pass on the wrong net;
    - a step-triggered save (`every_n_train_steps`) before the first validation still writes last.ckpt
      (Lightning defers it until the monitored metric exists, so a job preempted in its first ImageNet epoch
      would have nothing to resume from);
    - a step-triggered save on an epoch's last step comes before that epoch's validation, and Lightning skips
      the epoch-end save of the same step: last.ckpt would lack the epoch's plateau step and metric rows.
    Its saves go behind training (BackgroundCheckpointIO)."""

    _step_saved_in_training = -1  # the global step whose last.ckpt was written before its validation

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.validated = False  # whether a validation (not the sanity check) has run in this process

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if isinstance(trainer.strategy.checkpoint_io, BackgroundCheckpointIO):
            trainer.strategy.checkpoint_io.raise_failure()
        with in_background(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if checkpoint_defers_until_validation(self):
                save_last_checkpoint(self, trainer)
        self._step_saved_in_training = last_saved_step(self)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        saved_before_validation = self._step_saved_in_training == trainer.global_step
        with in_background(trainer):
            # a run that stops (max_steps) before its first validation has no val error to rank by: only
            # last.ckpt, without Lightning's "could not find the monitored key" warning, which then does not apply
            if self.monitor is None or self.monitor in trainer.callback_metrics or self.validated:
                super().on_train_epoch_end(trainer, pl_module)
            if checkpoint_saves_on_train_epoch_end(self, trainer):
                save_last_checkpoint(self, trainer, resave_step=saved_before_validation)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.validated = self.validated or not trainer.sanity_checking
        saved_before_validation = self._step_saved_in_training == trainer.global_step
        with in_background(trainer):
            super().on_validation_end(trainer, pl_module)
            if not checkpoint_saves_on_train_epoch_end(self, trainer):
                save_last_checkpoint(self, trainer, resave_step=saved_before_validation)


def _random_state() -> dict:
    # only tensors and plain Python values: Lightning loads checkpoints with weights_only=True
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_ranks(state: Any) -> list:
    """Every rank's `state`, in rank order, on every rank (a checkpoint is written by rank 0 alone, so what
    differs between ranks must be gathered into it); `[state]` in a single process."""
    if dist.is_available() and dist.is_initialized():
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return states
    return [state]


def own_rank(states: list) -> Any:
    """This rank's entry of a `gather_ranks` list (None when the run had fewer ranks)."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return states[rank] if rank < len(states) else None


class RandomStateCheckpoint(L.Callback):
    """Every rank's own RNG streams: seeded apart at the start of a fresh fit (rank r from `seed + r`, so the
    ranks draw different dropout masks, as separate GPUs would), saved per rank in the checkpoint and restored
    per rank on resume, so a run killed and resumed draws the same masks on every rank as one that never
    stopped. (Augmentation draws nothing from these streams: it is keyed by seed, epoch and sample index.)"""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning restores a checkpoint (which then replaces these states with the saved ones)
        if stage == "fit":
            rank_seed = self.seed + trainer.global_rank
            random.seed(rank_seed)
            np.random.seed(rank_seed)
            torch.manual_seed(rank_seed)  # and every CUDA device's

    def state_dict(self) -> dict:
        return {"ranks": gather_ranks(_random_state())}

    def load_state_dict(self, state_dict: dict) -> None:
        state = own_rank(state_dict.get("ranks") or [])
        if state is not None:
            _set_random_state(state)

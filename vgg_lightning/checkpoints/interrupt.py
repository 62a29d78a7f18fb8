"""Where a run stopped by a signal leaves its state: `checkpoints/last-interrupted.ckpt`, written at the first
step boundary after the signal (`signals` notes it while training). The state there is whole, as in any step
checkpoint (weights and momentum after the step, the loop's progress, each rank's random streams, the loader's
position), so a run resumed from it ends exactly as one never stopped; a state taken mid-step would hold the
random draws and the batch of a step whose update it lacks. `ckpt_path=last` picks it when it is the newest
state; it is removed when a later fit ends normally."""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Checkpoint

from .. import signals
from ..compat import without_signal_handlers

log = logging.getLogger(__name__)


class InterruptCheckpoint(Checkpoint):
    """Stops training at the step boundary after a signal: saves the state there (after the saves queued
    behind training), then exits 128 + the signal's number (`signals.stop`; SIGUSR1 on SLURM requeues first).
    Under DDP the ranks agree on the step, whichever received the signal (a CPU all-reduce of one number at each
    optimiser step, over a gloo group of their own: no device sync), so every rank saves the same state. A signal
    during the last validation stops the run when the fit loop ends, before the test."""

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str, filename: str = "last-interrupted") -> None:
        super().__init__()
        self.dirpath, self.filename = dirpath, filename
        self._group = None  # the ranks' gloo group (DDP)
        self._step = -1  # the global step last looked at: the loop stops only after an optimiser step

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if signals.STATE.installed:
            without_signal_handlers(trainer)  # the process owns its signals from its first instant (signals.py)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            self._group = dist.new_group(backend="gloo")
        self._step = trainer.global_step
        signals.train(True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self._step:  # inside an accumulation of gradients: not a step boundary
            return
        self._step = trainer.global_step
        signum = self._agreed()
        if signum:
            self._stop(trainer, signum)

    def on_train_end(self, trainer, pl_module) -> None:
        signum = self._agreed()
        if signum:
            self._stop(trainer, signum)
        signals.train(False)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        signals.train(False)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # the fit ended normally: a resume from the interrupted state is behind it
            trainer.strategy.remove_checkpoint(self.ckpt_path)

    def _agreed(self) -> int | None:
        """The signal to stop on now: this process's, or under DDP any rank's (the largest number)."""
        signum = signals.requested() or 0
        if self._group is not None:
            flag = torch.tensor([signum])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
            signum = int(flag.item())
        return signum or None

    def _stop(self, trainer, signum: int) -> None:
        signals.leaving()
        trainer.save_checkpoint(self.ckpt_path)  # on disk at return (BackgroundCheckpointIO), every rank's state
        signals.stop(
            signum, f"the state after step {trainer.global_step} is in {self.ckpt_path}; resume with ckpt_path=last"
        )

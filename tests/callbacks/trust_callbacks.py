"""Test-only callbacks: a Ctrl-C at a given step, a signal in the middle of one, and a temp dir that cannot be
written (as a full /tmp)."""

import os
import signal
import signal as signal_module
import tempfile

import lightning as L


class InterruptAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGINT)


class UnusableTempdir(L.Callback):
    """Every later tempfile call fails, as with a full $TMPDIR: a checkpoint save must not stage there."""

    def setup(self, trainer, pl_module, stage) -> None:
        tempfile.tempdir = os.path.join(trainer.default_root_dir, "no-such-tmp")


class SignalAt(L.Callback):
    """Sends `signal` (a name: SIGTERM, SIGINT, ...) to its own process: during training step `step` (counted from
    1), between its backward and its update, where a signal from outside lands most of the time; or during the
    validation of epoch `validation` (from 0); or at `stage` "setup" (the Trainer's, before any step) or "test"
    (the test after training). `twice`: two at once (Ctrl-C pressed again). `rank`: only that rank sends (as
    `kill PID` reaches one process)."""

    def __init__(self, signal="SIGTERM", step=0, validation=-1, stage=None, twice=False, rank=None) -> None:
        self.signum, self.step, self.validation = getattr(signal_module, signal), step, validation
        self.stage, self.twice, self.rank = stage, twice, rank

    def _send(self, trainer) -> None:
        if self.rank is None or trainer.global_rank == self.rank:
            for _ in range(2 if self.twice else 1):
                os.kill(os.getpid(), self.signum)

    def setup(self, trainer, pl_module, stage) -> None:
        if self.stage == "setup" and stage == "fit":
            self._send(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        if self.stage == "test":
            self._send(trainer)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step + 1 == self.step:
            self._send(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.current_epoch == self.validation and not trainer.sanity_checking and batch_idx == 0:
            self._send(trainer)

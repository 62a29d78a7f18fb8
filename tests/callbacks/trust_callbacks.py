"""Test-only callbacks: a Ctrl-C at a given step, and a temp dir that cannot be written (as a full /tmp)."""

import os
import signal
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

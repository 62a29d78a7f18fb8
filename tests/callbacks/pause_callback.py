"""Test-only: a callback that holds a SLURM job's attempt at a given step (or in the Trainer's setup, before any
step), so that a test can preempt it there (send it a signal) at a known point; the other attempts run straight
through."""

import os
import time
from pathlib import Path

import lightning as L

from vgg_lightning import signals


class PauseAtStep(L.Callback):
    """`step`: hold after that training step (0: in the Trainer's setup) of attempt `attempt` (SLURM's restart
    count), writing `marker` (job id and step) first. A signal noted while training ends the hold: the run then
    stops at this step boundary."""

    def __init__(self, step: int, marker: str, seconds: float = 300.0, attempt: int = 0) -> None:
        self.step, self.marker, self.seconds, self.attempt = step, Path(marker), seconds, attempt

    def _hold(self, step: int) -> None:
        if int(os.environ.get("SLURM_RESTART_COUNT") or 0) != self.attempt:
            return
        self.marker.write_text(f"{os.environ.get('SLURM_JOB_ID')} {step}")
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not signals.requested():  # the preemption arrives here
            time.sleep(0.1)

    def setup(self, trainer, pl_module, stage) -> None:
        if self.step == 0 and stage == "fit":
            self._hold(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.step and trainer.global_step == self.step:
            self._hold(trainer.global_step)

"""Test-only: a callback that holds a SLURM job's first attempt at a given step, so that a test can preempt it
there (send it the time-limit signal) at a known point; a requeued attempt runs straight through."""

import os
import time
from pathlib import Path

import lightning as L


class PauseAtStep(L.Callback):
    def __init__(self, step: int, marker: str, seconds: float = 300.0) -> None:
        self.step, self.marker, self.seconds = step, Path(marker), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first_attempt = int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0
        if trainer.global_step == self.step and first_attempt:
            self.marker.write_text(f"{os.environ.get('SLURM_JOB_ID')} {trainer.global_step}")
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:  # the preemption arrives here
                time.sleep(0.1)

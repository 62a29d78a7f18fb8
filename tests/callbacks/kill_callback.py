"""Test-only: a callback that SIGKILLs its own process after a given step, as a preemption would."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """`group=True` kills every process of the process group at once (all DDP ranks), as a node going down
    would; the test starts the command in a session of its own so that pytest is not in that group.
    `hpc_checkpoint=PATH` first saves PATH the way Lightning's SLURM handler saves hpc_ckpt_N.ckpt on SIGUSR1
    (`trainer.save_checkpoint`, on every rank), as a job at its time limit would before being requeued.
    The kill comes once the checkpoints saved behind training are on disk (BackgroundCheckpointIO.wait), as a
    preemption seconds later would: the tests compare the resumed run, not the race with the writer (a kill
    during a write leaves the previous file, tests/test_resume.py checks that apart)."""

    def __init__(self, step: int, group: bool = False, hpc_checkpoint: str | None = None) -> None:
        self.step, self.group, self.hpc_checkpoint = step, group, hpc_checkpoint

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.step:
            return
        if self.hpc_checkpoint:
            trainer.save_checkpoint(self.hpc_checkpoint)
        getattr(trainer.strategy.checkpoint_io, "wait", lambda: None)()
        if trainer.is_global_zero:
            if self.group:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

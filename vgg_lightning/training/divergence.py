"""A training run whose loss stops being finite (a learning rate too large for the data: the paper's recipe at
full lr on a small folder does it) stops with one line naming the step and the last finite loss, exit status 1,
before any checkpoint keeps weights from after it: a diverged run never names a best checkpoint, never leaves a
last.ckpt to resume from without saying so, and writes no results.

The losses are watched on the device, at every step, without reading anything back (each read would be a
host-device sync, which the training step avoids between logging intervals: benchmarks/sync_count.py): the
first batch whose loss was not finite, that loss, and the last finite loss before it. They are read where the
host reads device values anyway: at the loggers' steps, when validation starts, and before a checkpoint is
written (which also checks the weights themselves: a finite loss can still give an infinite gradient)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..checkpoints.read import nonfinite


class Diverged(ValueError):
    """Training stopped: its loss, its validation loss or its weights stopped being finite."""


ADVICE = "Lower optim.lr, or resume from an earlier checkpoint with ckpt_path=<file>"


class LossWatch(nn.Module):
    """The device-side record (buffers that move with the module, kept out of its checkpoints)."""

    def __init__(self) -> None:
        super().__init__()
        for name, value in (("batches", 0), ("first_bad", -1), ("bad_loss", 0.0), ("last_loss", math.nan)):
            self.register_buffer(name, torch.tensor(value), persistent=False)
        self.register_buffer("validation_bad", torch.tensor(False), persistent=False)
        self.start_step, self.accumulate = 0, 1

    def start(self, global_step: int, accumulate: int) -> None:
        """A fit begins (or resumes) at `global_step`; batches are counted from here."""
        self.start_step, self.accumulate = global_step, max(int(accumulate), 1)
        self.batches.zero_()
        self.first_bad.fill_(-1)

    def update(self, loss: torch.Tensor) -> None:
        """One training batch's loss: device operations only."""
        loss = loss.detach().float()
        finite, before = torch.isfinite(loss), self.first_bad < 0
        first = ~finite & before
        self.first_bad.copy_(torch.where(first, self.batches, self.first_bad))
        self.bad_loss.copy_(torch.where(first, loss, self.bad_loss))
        self.last_loss.copy_(torch.where(finite & before, loss, self.last_loss))
        self.batches += 1

    def update_validation(self, loss: torch.Tensor) -> None:
        self.validation_bad |= ~torch.isfinite(loss.detach())

    def check(self, any_rank: Callable[[bool], bool] = bool) -> None:
        """Raise Diverged when a training loss was not finite, here or (`any_rank`: the strategy's reduction of a
        decision, under DDP) on another rank: every rank stops at the same point. Reads the device."""
        batch = int(self.first_bad)
        if not any_rank(batch >= 0):
            return
        if batch < 0:
            raise Diverged(f"training diverged on another rank (its loss is not finite). {ADVICE}")
        step, last = self.start_step + batch // self.accumulate + 1, float(self.last_loss)
        before = f"the last finite loss: {last:.4g}" if math.isfinite(last) else "no finite loss before it in this run"
        raise Diverged(
            f"training diverged at step {step}: its loss is {float(self.bad_loss)} ({before}); no checkpoint holds "
            f"weights from after step {step - 1}. {ADVICE}"
        )

    def check_validation(self, epoch: int, any_rank: Callable[[bool], bool] = bool) -> None:
        if any_rank(bool(self.validation_bad)):
            raise Diverged(f"training diverged: the validation loss of epoch {epoch} is not finite. {ADVICE}")

    def check_weights(self, state: dict, step: int, any_rank: Callable[[bool], bool] = bool) -> None:
        """Before a checkpoint is written: its losses, then its weights, finite."""
        self.check(any_rank)
        bad = nonfinite(state)
        if any_rank(bool(bad)):
            raise Diverged(
                f"training diverged: after step {step}, {', '.join(bad[:3]) or 'the weights'} hold NaN or inf. {ADVICE}"
            )

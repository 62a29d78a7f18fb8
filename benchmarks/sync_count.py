"""Counting, per training step, what makes the host wait for the device.

- `HostReads`: the calls that bring a tensor's value to the host (`.item()`, `bool(t)`, `.tolist()`,
  `torch.unique`), counted on any device: on a GPU each one is a host-device sync.
- `CudaSyncs`: the synchronisations themselves, as torch's sync debug mode reports them (a warning per
  synchronising CUDA call), on a GPU only.

Both are Lightning callbacks that keep one count per training step (`per_step`).
"""

from __future__ import annotations

import warnings

import lightning as L
import torch


class HostReads(L.Callback):
    READS = (("Tensor", "item"), ("Tensor", "__bool__"), ("Tensor", "tolist"), ("torch", "unique"))

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self._count, self._saved = 0, []

    def _counting(self, read):
        def counted(*args, **kwargs):
            self._count += 1
            return read(*args, **kwargs)

        return counted

    def __enter__(self) -> HostReads:
        for owner, name in self.READS:
            target = torch.Tensor if owner == "Tensor" else torch
            self._saved.append((target, name, getattr(target, name)))
            setattr(target, name, self._counting(getattr(target, name)))
        return self

    def __exit__(self, *exc) -> None:
        for target, name, read in reversed(self._saved):
            setattr(target, name, read)
        self._saved.clear()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._count = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_step.append(self._count)


class CudaSyncs(L.Callback):
    """torch.cuda.set_sync_debug_mode("warn") while it is entered; the warnings counted per training step."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self._start = 0

    def __enter__(self) -> CudaSyncs:
        self._catcher = warnings.catch_warnings(record=True)
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(*exc)

    def _syncs(self) -> int:
        return sum("synchroniz" in str(record.message) for record in self._records)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._syncs()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_step.append(self._syncs() - self._start)


def quiet_steps(per_step: list[int], interval: int) -> list[int]:
    """The counts of the steps between logging intervals (neither the first step nor a logging step)."""
    return [count for step, count in enumerate(per_step) if step and (step + 1) % interval]

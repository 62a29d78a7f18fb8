"""Counting, per training step, what makes the host wait for the device.

- `HostSyncs`: on any device (the CPU in CI), every Python call that is a host-device synchronisation on a GPU:
  a read of a tensor's value (`.item()`, `bool(t)`, `.tolist()`, `.cpu()`, `torch.unique`, ...), and a tensor
  made from a Python number on the training device (`torch.tensor(x, device=d)`, `torch.as_tensor`, `torch.full`,
  `new_tensor`, ...: on a GPU each is a host-to-device copy or a fill launched from the host; the copies wait).
  A TorchFunctionMode sees them whoever calls: our module, torchmetrics, Lightning's logging and progress bar.
  Each one is kept with its caller's file and line (the first frame outside torch), so a failure names the line.
- `CudaSyncs`: the synchronisations themselves, as torch's sync debug mode reports them, on a GPU only; with
  `strict=True`, the steps between logging intervals run in its "error" mode, so the first sync there stops the
  run with its traceback.

Both are Lightning callbacks that keep one count per training step (`per_step`). A step's count runs from its
`on_train_batch_start` to the next step's, so the loop's own work after a step (the loggers' and the progress
bar's reads) counts with it; the epoch's end (validation, checkpoints, epoch metrics) counts with no step (give
the counter first in the trainer's callbacks, so that it closes the step before the others' epoch-end hooks run).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.overrides import TorchFunctionMode

Tensor = torch.Tensor
# reads of a value on the device: each waits for the device to reach it
READS = {
    Tensor.item: "Tensor.item", Tensor.tolist: "Tensor.tolist", Tensor.__bool__: "Tensor.__bool__",
    Tensor.__float__: "Tensor.__float__", Tensor.__int__: "Tensor.__int__", Tensor.__index__: "Tensor.__index__",
    Tensor.cpu: "Tensor.cpu", Tensor.numpy: "Tensor.numpy", torch.unique: "torch.unique",
    torch.nonzero: "torch.nonzero", torch.Tensor.nonzero: "Tensor.nonzero", torch.masked_select: "torch.masked_select",
    torch.equal: "torch.equal", torch.allclose: "torch.allclose", torch.is_nonzero: "torch.is_nonzero",
}  # fmt: skip
# tensors made from Python values, and where their `device` argument sits when it is given by position
FROM_HOST = {
    torch.tensor: ("torch.tensor", None), torch.as_tensor: ("torch.as_tensor", 2),
    torch.asarray: ("torch.asarray", None), torch.scalar_tensor: ("torch.scalar_tensor", None),
    torch.full: ("torch.full", None), torch.full_like: ("torch.full_like", None),
    Tensor.new_tensor: ("Tensor.new_tensor", None), Tensor.new_full: ("Tensor.new_full", None),
}  # fmt: skip
_TORCH = str(Path(torch.__file__).parent)


def _caller() -> str:
    """file:line of the innermost frame outside torch (the line that asked for the sync)."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(_TORCH) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        return "?"
    parts = Path(frame.f_code.co_filename).parts
    return f"{'/'.join(parts[-3:])}:{frame.f_lineno}"


class _StepWindows(L.Callback):
    """One count per training step, from its on_train_batch_start to the next step's (see the module's doc)."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self.events: list[list[str]] = []  # per step: what was counted, and where (HostSyncs)
        self._open = False
        self._start = 0

    def _total(self) -> int:
        raise NotImplementedError

    def _close(self) -> None:
        if self._open:
            self.per_step.append(self._total() - self._start)
            self._open = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._close()
        self._open, self._start = True, self._total()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._close()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()


class HostSyncs(_StepWindows, TorchFunctionMode):
    """Enter it around `trainer.fit` (it is a torch function mode of the training thread) and pass it as a
    callback. `device`: the training device, where a tensor made from a Python number is counted (on a CPU run,
    the CPU: every such tensor made with a device argument that names it, or made beside a tensor there)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        _StepWindows.__init__(self)
        TorchFunctionMode.__init__(self)
        self.device = torch.device(device)
        self._seen: list[str] = []

    def _total(self) -> int:
        return len(self._seen)

    def _close(self) -> None:
        if self._open:
            self.events.append(self._seen[self._start :])
        super()._close()

    def on_train_start(self, trainer, pl_module) -> None:
        self.device = pl_module.device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READS:
            self._seen.append(f"{READS[func]} at {_caller()}")
        elif func in FROM_HOST and self._on_device(func, args, kwargs):
            self._seen.append(f"{FROM_HOST[func][0]} at {_caller()}")
        return func(*args, **kwargs)

    def _on_device(self, func, args, kwargs) -> bool:
        name, position = FROM_HOST[func]
        device = kwargs.get("device")
        if device is None and position is not None and len(args) > position:
            device = args[position]
        if device is None and (name.startswith("Tensor.new") or name == "torch.full_like"):
            device = args[0].device  # made beside the tensor it is called on
        return device is not None and torch.device(device).type == self.device.type


class CudaSyncs(_StepWindows):
    """torch.cuda.set_sync_debug_mode while it is entered: each synchronising CUDA call is a warning, counted per
    step; with `strict` (and `interval`, trainer.log_every_n_steps), the steps between logging intervals run in
    "error" mode: a sync there raises at the line that made it."""

    def __init__(self, strict: bool = False, interval: int = 0) -> None:
        super().__init__()
        self.strict, self.interval = strict, interval

    def __enter__(self) -> CudaSyncs:
        self._catcher = warnings.catch_warnings(record=True)
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(*exc)

    def _total(self) -> int:
        return sum("synchroniz" in str(record.message) for record in self._records)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        step = len(self.per_step)
        quiet = self.strict and step and (step + 1) % self.interval
        torch.cuda.set_sync_debug_mode("error" if quiet else "warn")

    def _close(self) -> None:
        super()._close()
        torch.cuda.set_sync_debug_mode("warn")


def quiet_steps(per_step: list[int], interval: int) -> list[int]:
    """The counts of the steps between logging intervals (neither the first step nor a logging step)."""
    return [count for step, count in enumerate(per_step) if step and (step + 1) % interval]

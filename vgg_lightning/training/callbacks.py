"""Training callbacks of our own (throughput and MFU, the GPU speed-ups); the rest come from Lightning."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from ..speed import on_here, peak_flops, train_flops_per_image

log = logging.getLogger(__name__)


class ImagesPerSecond(L.Callback):
    """Training throughput over all processes, on the progress bar and in the logs (`train/images_per_s`),
    the model FLOP utilisation on GPUs whose peak we know (`train/mfu`, 3x forward FLOPs against the dense
    bf16 peak), and the epoch's wall time (`train/epoch_time_s`). Measured over the steps between two writes of
    the loggers (trainer.log_every_n_steps) and logged at those steps only: each number logged is a tensor made
    on the device, which between them would make the host wait."""

    def __init__(self) -> None:
        self._logged_at = -1  # the global step of the last figures logged

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._window_start = time.perf_counter()
        self._images = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch starts without that hook
        if (
            peak_flops(pl_module.device) is None
        ):  # said on a GPU; on the CPU, where no one looks for MFU, in the log file
            on_gpu = pl_module.device.type == "cuda"
            device = torch.cuda.get_device_name(pl_module.device) if on_gpu else "the CPU"
            level = logging.INFO if on_gpu else logging.DEBUG
            log.log(level, "MFU unknown: no dense bf16 peak known for %s (vgg_lightning/speed.py, PEAK_BF16)", device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch.get("label", ())) * trainer.world_size
        step = trainer.global_step
        if step % max(trainer.log_every_n_steps, 1) or step == self._logged_at:  # as Lightning's loggers write
            return
        now = time.perf_counter()
        rate = self._images / max(now - self._window_start, 1e-9)
        pl_module.log("train/images_per_s", rate, on_step=True, on_epoch=False, rank_zero_only=True)
        peak = peak_flops(pl_module.device)
        if peak:
            mfu = rate * train_flops_per_image(pl_module.net) / (peak * trainer.world_size)
            pl_module.log("train/mfu", mfu, on_step=True, on_epoch=False, rank_zero_only=True)
        self._window_start, self._images, self._logged_at = now, 0, step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("train/epoch_time_s", time.perf_counter() - self._epoch_start, rank_zero_only=True)


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, reading the logged values at the steps the loggers write (every
    `trainer.log_every_n_steps`) instead of at every step: each read of a value on the GPU is a host-device sync
    (Lightning turns them into Python numbers for the bar), which empties the launch queue and starves the GPU.
    The training step's values (`STEP_VALUES`) are logged without `prog_bar` for that reason (Lightning would
    read them after every step); this bar shows them from the trainer's callback metrics when it reads. Between
    reads the bar shows the last values read; the step count moves every step."""

    STEP_VALUES = ("train/loss_step", "train/images_per_s", "train/mfu")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: dict = {}
        self._read_at = None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        step = trainer.global_step
        due = self._read_at is None or (step % trainer.log_every_n_steps == 0 and step != self._read_at)
        if due or not trainer.training:  # validation and epoch ends: read now (once)
            values = trainer.callback_metrics
            steps = {name: values[name].item() for name in self.STEP_VALUES if name in values}
            shown = super().get_metrics(trainer, pl_module)
            shown.pop("v_num", None)  # the logger's version: a run dir holds one run
            self._shown, self._read_at = {**shown, **steps}, step
        return self._shown


class GPUSpeedups(L.Callback):
    """channels_last weights (cuDNN's fast NHWC kernels; inputs follow the weights) and torch.compile of the
    net's forward. The net's parameters and state-dict keys stay as they are, so checkpoints do not change."""

    def __init__(self, channels_last=True, compile="auto") -> None:
        # compile: auto | true | false, or the name of a torch.compile backend (`aot_eager`: dynamo and
        # AOTAutograd without Inductor's code generation, what CI runs on the CPU in seconds rather than minutes)
        self.backend = "inductor"
        if isinstance(compile, str) and compile.lower() not in ("auto", "true", "false"):
            self.backend, compile = compile, True
        self.channels_last, self.compile = on_here(channels_last), on_here(compile)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", None)
        if net is None:  # not a VGGClassifier (an evaluator holding several nets does its own)
            return
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        if self.compile and not getattr(net, "_compiled", False):
            net.forward = torch.compile(net.forward, backend=self.backend)
            net._compiled = True
        log.info("speed-ups: channels_last=%s compile=%s (%s)", self.channels_last, self.compile, self.backend)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Hand the net back eager: the evaluation after training feeds it images of every shape, and a
        compiled forward would compile anew for each."""
        net = getattr(pl_module, "net", None)
        if net is not None and getattr(net, "_compiled", False):
            del net.forward  # the instance attribute set in setup: VGG.forward shows through again
            net._compiled = False
            log.info("torch.compile undone: the evaluation gets the eager net")


class EpochTable(L.Callback):
    """Each epoch's training loss, validation loss and top-1 error and lr, as a table the training task prints
    when it ends (`table()`): what a run learnt, at a glance. An epoch's row is read when its figures are all
    logged (at the next epoch's start, or when training ends); the rows travel in the checkpoints, so a resumed
    run prints them all."""

    COLUMNS = (  # heading, logged key, format
        ("epoch", None, "{:d}"),
        ("train loss", "train/loss_epoch", "{:.3f}"),
        ("val loss", "val/loss", "{:.3f}"),
        ("val top-1 error", "val/top1_error", "{:.1f} %"),
        ("lr", "lr", "{:g}"),
    )

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}
        self._validated: int | None = None  # the epoch whose validation ran last, its row not yet read

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = trainer.current_epoch

    def _record(self, trainer: L.Trainer) -> None:
        values = trainer.callback_metrics
        if self._validated is not None:
            self.rows[self._validated] = {key: float(values[key]) for _, key, _ in self.COLUMNS[1:] if key in values}
            self._validated = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def state_dict(self) -> dict:
        return {"rows": {str(epoch): row for epoch, row in self.rows.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = {int(epoch): row for epoch, row in (state_dict.get("rows") or {}).items()}

    def table(self, chance: float | None = None) -> str:
        """The rows as text: a heading, one line per epoch; the chance level beside the first error."""
        headings = [heading for heading, _, _ in self.COLUMNS]
        lines = []
        for epoch, row in sorted(self.rows.items()):
            cells = [fmt.format(epoch) if key is None else (fmt.format(row[key]) if key in row else "-")
                     for _, key, fmt in self.COLUMNS]  # fmt: skip
            lines.append(cells)
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headings)]
        text = ["  ".join(h.ljust(w) for h, w in zip(headings, widths)).rstrip()]
        for i, cells in enumerate(lines):
            line = "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
            text.append(f"{line}   (chance: {chance:.1f} %)" if i == 0 and chance is not None else line)
        return "\n".join(text)

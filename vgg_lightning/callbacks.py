"""Callbacks of our own; everything else comes from Lightning (checkpoints, progress bar, lr monitor)."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from .speed import peak_flops, train_flops_per_image

log = logging.getLogger(__name__)


class ImagesPerSecond(L.Callback):
    """Training throughput over all processes, on the progress bar and in the logs (`train/images_per_s`),
    the model FLOP utilisation on GPUs whose peak we know (`train/mfu`, 3x forward FLOPs against the dense
    bf16 peak), and the epoch's wall time (`train/epoch_time_s`)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._window_start = time.perf_counter()
        self._images = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch starts without that hook
        if peak_flops(pl_module.device) is None:
            device = torch.cuda.get_device_name(pl_module.device) if pl_module.device.type == "cuda" else "the CPU"
            log.info("MFU unknown: no dense bf16 peak known for %s (vgg_lightning/speed.py, PEAK_BF16)", device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch.get("label", ())) * trainer.world_size
        if (batch_idx + 1) % self.window == 0:
            now = time.perf_counter()
            rate = self._images / max(now - self._window_start, 1e-9)
            pl_module.log("train/images_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            peak = peak_flops(pl_module.device)
            if peak:
                mfu = rate * train_flops_per_image(pl_module.net) / (peak * trainer.world_size)
                pl_module.log("train/mfu", mfu, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            self._window_start, self._images = now, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("train/epoch_time_s", time.perf_counter() - self._epoch_start, rank_zero_only=True)

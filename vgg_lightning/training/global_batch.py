"""The paper's global batch on any number of devices: every optimiser step sees data.batch_size images."""

from __future__ import annotations

import logging

import lightning as L

from ..data.datamodule import batch_plan

log = logging.getLogger(__name__)


def accumulate_to_global_batch(trainer: L.Trainer, datamodule) -> int:
    """Every optimiser step sees data.batch_size images whatever the device count: a process whose share
    exceeds data.max_device_batch loads it in micro-batches, and the trainer accumulates their gradients."""
    if trainer.accumulate_grad_batches != 1:
        raise ValueError(
            f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}: the accumulation follows from "
            f"data.batch_size (the global batch) and data.max_device_batch; set those instead"
        )
    device_batch, steps = batch_plan(datamodule.batch_size, trainer.world_size, datamodule.max_device_batch)
    trainer.accumulate_grad_batches = steps
    log.log(
        logging.INFO if trainer.world_size > 1 or steps > 1 else logging.DEBUG,  # said when it is more than the batch
        "global batch %d = %d process(es) x %d images x %d accumulation step(s)",
        datamodule.batch_size,
        trainer.world_size,
        device_batch,
        steps,
    )
    return steps

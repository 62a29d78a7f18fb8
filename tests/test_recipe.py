"""The training recipe of Sec. 3.1: the global batch on any number of devices, the paper's defaults, and the
plateau schedule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import compose_cfg
from torch.utils.data import DataLoader

from vgg_lightning import paper
from vgg_lightning.data.datamodule import ImageNetDataModule, batch_plan
from vgg_lightning.training.global_batch import accumulate_to_global_batch
from vgg_lightning.training.module import VGGClassifier

WIDTH = 0.0625


# -- the global batch ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "world, limit, plan",
    [(1, None, (256, 1)), (4, None, (64, 1)), (1, 64, (64, 4)), (4, 32, (32, 2)), (8, 64, (32, 1)), (1, 100, (64, 4))],
)
def test_the_global_batch_is_device_batch_x_accumulation_x_devices(world, limit, plan):
    device_batch, steps = batch_plan(256, world, limit)
    assert (device_batch, steps) == plan and device_batch * steps * world == 256


def test_a_global_batch_that_does_not_divide_names_the_numbers():
    with pytest.raises(ValueError, match=r"data.batch_size=256 \(the global batch\) does not divide over 3 processes"):
        batch_plan(256, 3)
    with pytest.raises(ValueError, match="data.max_device_batch=0"):
        batch_plan(256, 1, 0)


def test_the_trainer_accumulates_what_the_devices_cannot_hold(demo_root):
    datamodule = ImageNetDataModule(demo_root, batch_size=8, max_device_batch=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    assert accumulate_to_global_batch(trainer, datamodule) == 4 and trainer.accumulate_grad_batches == 4
    assert datamodule.per_device_batch() == 2  # the loader's batch: 2 images x 4 steps = 8
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, accumulate_grad_batches=2
    )
    with pytest.raises(ValueError, match="data.max_device_batch"):
        accumulate_to_global_batch(trainer, datamodule)


def test_paper_recipe_defaults():
    cfg = compose_cfg()
    assert cfg.data.batch_size == paper.RECIPE["batch_size"] and cfg.data.max_device_batch is None
    assert cfg.trainer.max_epochs == paper.RECIPE["epochs"] and cfg.optim.max_decreases == paper.RECIPE["lr_decreases"]
    assert (cfg.optim.factor, cfg.optim.patience) == (0.1, 3)


# -- the plateau schedule -----------------------------------------------------------------------------------------
class FlatValidation(VGGClassifier):
    """Validation that never improves: every epoch is a plateau (with patience 0)."""

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/top1_error", 50.0, on_epoch=True, batch_size=1)


class LearningRates(L.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def one_batch() -> DataLoader:
    return DataLoader([{"image": torch.randn(3, 224, 224), "label": label} for label in (0, 1)], batch_size=2)


def test_plateau_divides_the_lr_by_10_three_times_then_stops():
    torch.manual_seed(0)
    optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 0, "max_decreases": 3}
    module = FlatValidation({"config": "A", "width": WIDTH, "init": "xavier"}, optim, num_classes=2)
    rates = LearningRates()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=20, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[rates],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=one_batch(), val_dataloaders=one_batch())
    # epoch 0 sets the best error; each later epoch is a plateau: 3 decreases, and the 4th plateau ends training
    assert rates.seen == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4, 1e-5])  # one batch per epoch: 5 epochs trained
    assert trainer.should_stop and trainer.current_epoch < trainer.max_epochs

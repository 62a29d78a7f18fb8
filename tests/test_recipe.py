"""The training recipe of Sec. 3.1: the global batch on any number of devices, the paper's defaults, the plateau
schedule; and a run that diverges stops, naming the step, with none of its diverged weights kept or used."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import FAST, assert_one_line_error, compose_cfg, run_cli_calls
from torch.utils.data import DataLoader

from vgg_lightning import paper
from vgg_lightning.checkpoints.read import read_checkpoint
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


# -- divergence -----------------------------------------------------------------------------------------------------
def test_a_diverging_run_stops_naming_the_step_and_no_file_keeps_or_uses_its_weights(
    cli_env, tmp_path, demo_root, demo_run
):
    """lr 10 without clipping: the loss is NaN at step 3. A checkpoint is asked for at every step, so a save
    comes before the loggers read the loss: the run stops there, with no best checkpoint, no results, and a
    last.ckpt of finite weights from before. A checkpoint holding NaN (as older versions wrote) is refused by
    every task that reads one. Four commands, one process."""
    run_dir = tmp_path / "diverged"
    nan = tmp_path / "nan.ckpt"
    checkpoint = read_checkpoint(str(demo_run / "checkpoints" / "last.ckpt"))
    checkpoint["state_dict"]["net.features.conv1_1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(checkpoint, nan)
    train = ["experiment=demo", f"data.root={demo_root}", *FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=4",
             "optim.lr=10", "trainer.gradient_clip_val=null", "callbacks.model_checkpoint.every_n_train_steps=1",
             "print_config=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    uses = [["task=predict", f"ckpt_path={nan}", f"inputs={demo_root}/val", "print_config=false",
             f"hydra.run.dir={tmp_path / 'p'}"],
            ["experiment=demo", f"data.root={demo_root}", "task=eval", f"ckpt_path={nan}", "print_config=false",
             f"hydra.run.dir={tmp_path / 'e'}"],
            ["-m", "vgg_lightning.export", str(nan), "--to", "torchvision", "--out", str(tmp_path / "x.pth")]]  # fmt: skip
    diverged, *refused = run_cli_calls(train, *uses, env=cli_env, cwd=tmp_path)
    assert_one_line_error(diverged, "training diverged at step 3: its loss is nan (the last finite loss: ",
                          "no checkpoint holds weights from after step 2. Lower optim.lr")  # fmt: skip
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.ckpt"]  # no best, no interrupted state
    last = read_checkpoint(str(run_dir / "checkpoints" / "last.ckpt"))
    assert last["global_step"] == 2 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert not (run_dir / "results.json").exists()
    for result in refused:
        assert_one_line_error(result, f"'{nan}' holds weights that are not finite (net.features.conv1_1.weight)")
    assert not (tmp_path / "x.pth").exists() and not (tmp_path / "p" / "predictions.csv").exists()


def test_the_loss_watch_reads_nothing_back_between_checks():
    """The device-side record of the losses: the step and the last finite loss named from it (in the CLI test
    above, the check comes at a save; here at the loggers' step)."""
    from vgg_lightning.training.divergence import Diverged, LossWatch

    watch = LossWatch()
    watch.start(global_step=10, accumulate=2)  # resumed at step 10, two batches a step
    for loss in (2.5, 2.25, 2.0, float("inf"), float("nan")):
        watch.update(torch.tensor(loss))
    with pytest.raises(Diverged, match=r"diverged at step 12: its loss is inf \(the last finite loss: 2\)"):
        watch.check()
    watch.start(global_step=0, accumulate=1)
    watch.update(torch.tensor(1.0))
    watch.check()
    with pytest.raises(Diverged, match="after step 1, w hold NaN or inf"):
        watch.check_weights({"w": torch.tensor([1.0, float("nan")]), "steps": torch.tensor(3)}, 1)

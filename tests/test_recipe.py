"""The training recipe of Sec. 3.1: the global batch, the plateau schedule, warm starts, the experiment files."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from omegaconf import OmegaConf
from test_cli import compose_cfg
from torch.utils.data import DataLoader

from vgg_lightning import paper
from vgg_lightning.app.results import paper_figures
from vgg_lightning.data.datamodule import ImageNetDataModule, batch_plan
from vgg_lightning.models import build_vgg
from vgg_lightning.models.warm_start import WARM_START_LAYERS, WarmStartError, warm_start
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


# -- warm starts --------------------------------------------------------------------------------------------------
def checkpoint_of(net, classes: int | None = None) -> dict:
    """What a VGGClassifier checkpoint holds, as torch.load gives it."""
    return {
        "hyper_parameters": {
            "model": {"config": net.config, "width": net.width},
            "num_classes": classes or net.num_classes,
        },
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }


def warm_start_from(target, source):
    """warm_start as the training task calls it, with a trained net's state dict and spec."""
    return warm_start(target, source.state_dict(), source.spec())


def weights(net) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in net.conv_layers().items()}


@pytest.mark.parametrize("config", ["A-LRN", "B", "C", "D", "E"])
def test_warm_start_copies_exactly_the_documented_layers_from_A(config):
    torch.manual_seed(0)
    a = build_vgg("A", num_classes=4, width=WIDTH, init="xavier")
    deep = build_vgg(config, num_classes=4, width=WIDTH)
    before = weights(deep)
    mapping = warm_start_from(deep, a)
    assert list(mapping) == list(WARM_START_LAYERS) and all(k == v for k, v in mapping.items())
    source, after = weights(a), weights(deep)
    for name in after:
        expected = source[name] if name in WARM_START_LAYERS else before[name]
        torch.testing.assert_close(after[name], expected, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(deep.head.fc8.bias, a.head.fc8.bias, rtol=0, atol=0)


def test_warm_start_from_the_same_config_copies_everything():
    d384, d256 = build_vgg("D", num_classes=4, width=WIDTH), build_vgg("D", num_classes=4, width=WIDTH, init="xavier")
    mapping = warm_start_from(d384, d256)
    assert len(mapping) == 16  # 13 convs + 3 FC
    for name, weight in weights(d384).items():
        torch.testing.assert_close(weight, weights(d256)[name], rtol=0, atol=0)


def test_a_checkpoint_that_does_not_fit_names_the_layer_and_why():
    e = build_vgg("E", num_classes=4, width=WIDTH)
    before = weights(e)
    with pytest.raises(WarmStartError, match=r"conv1_1 of config E .* \(4, 3, 3, 3\).*model.width=0.125"):
        warm_start_from(e, build_vgg("A", num_classes=4, width=0.125))
    for name, weight in weights(e).items():  # checked before anything is copied
        torch.testing.assert_close(weight, before[name], rtol=0, atol=0)


@pytest.mark.parametrize("source_config", ["A", "E"])
def test_a_checkpoint_of_another_class_count_gives_everything_but_fc8(source_config, caplog):
    """Fine-tuning onto a data set with other classes: fc8 is a new layer, the rest is copied, the log says so."""
    e = build_vgg("E", num_classes=4, width=WIDTH)
    fc8 = e.head.fc8.weight.detach().clone()
    source = build_vgg(source_config, num_classes=8, width=WIDTH, init="xavier")
    with caplog.at_level("INFO"):
        mapping = warm_start_from(e, source)
    assert "fc8" not in mapping and {"conv1_1", "fc6", "fc7"} <= set(mapping)
    torch.testing.assert_close(e.head.fc8.weight, fc8, rtol=0, atol=0)  # as initialised
    torch.testing.assert_close(e.head.fc7.weight, source.head.fc7.weight, rtol=0, atol=0)
    assert "fc8: a new 4-class layer, the checkpoint's has 8 classes" in caplog.text


def two_images():
    """A red and a blue square on grey noise, scaled like torchvision's input (unit variance)."""
    generator = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(2, 3, 224, 224, generator=generator)
    x[0, 0, 40:140, 60:160] += 2.0
    x[1, 2, 80:180, 30:130] += 2.0
    return x, torch.tensor([0, 1])


def losses(net, steps: int, lr: float = 0.1) -> list[float]:
    """The paper's SGD (momentum 0.9, weight decay 5e-4) on one fixed batch (of 2: hence lr 0.1)."""
    x, y = two_images()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    found = []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        found.append(loss.item())
    return found


def narrow(config: str, init: str):
    torch.manual_seed(0)
    return build_vgg(config, num_classes=2, width=WIDTH, init=init, dropout=0.0)  # no dropout: a clean signal


def test_warm_start_makes_a_deep_net_learn_where_the_papers_gaussian_does_not():
    """E (19 layers) from N(0, 0.01) passes no signal: its loss stays at ln 2. From Glorot's init it learns,
    slowly; warm-started from a trained A it learns at once. At width 1/16 the layers between A's are too
    narrow for N(0, 0.01) as well, so the warm-started E takes them from xavier
    (`model.init=xavier model.init_from=A.ckpt`)."""
    chance = math.log(2)
    gaussian = losses(narrow("E", "gaussian"), 3)
    assert all(abs(loss - chance) < 1e-3 for loss in gaussian), gaussian

    a = narrow("A", "xavier")
    assert losses(a, 5)[-1] < 0.1  # A itself learns from scratch

    xavier = losses(narrow("E", "xavier"), 10)
    assert xavier[-1] < chance - 0.015 and xavier[-1] < min(xavier[:-1]), xavier
    warm = narrow("E", "xavier")
    warm_start_from(warm, a)
    started = losses(warm, 5)
    assert started[-1] < 0.5 and started[-1] < xavier[4] - 0.1, (started, xavier)


# -- the experiment files -----------------------------------------------------------------------------------------
EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("table*/*.yaml") if not p.name.startswith("_"))


def test_every_paper_row_has_an_experiment_file():
    names = {f"{p.parent.name}/{p.stem}" for p in EXPERIMENTS}
    assert names == {f"table{t}/{row.name}" for t, rows in paper.TABLES.items() for row in rows}


def test_the_papers_figures_have_one_home():
    """The experiment files name their row (`paper: table3/D_jitter`); its figures and Q come from paper.py."""
    assert paper.figures("table3/D_jitter") == {"top1_error": 25.6, "top5_error": 8.1}
    assert paper.figures("sec4/B_shallow_S256") == {"baseline": "B", "top1_error_above": 7.0, "protocol": "center"}
    with pytest.raises(ValueError, match=r"paper='table3/D_jiter': no row or finding of the paper; choose one of "):
        paper.figures("table3/D_jiter")
    assert paper.test_scales("table4/D_S384") == [352, 384, 416]
    assert paper_figures("table4/D_S256") == {"top1_error": 26.6, "top5_error": 8.6}
    assert paper_figures(OmegaConf.create({"top1_error": 30.0})) == {"top1_error": 30.0}  # a file of one's own
    assert paper_figures(None) is None
    for path in (REPO / "experiments").rglob("*.yaml"):
        text = path.read_text()
        assert "top1_error" not in text and "scales: [" not in text, f"{path} writes a figure of paper.py again"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_experiment_composes_with_its_paper_row(path: Path):
    name = f"{path.parent.name}/{path.stem}"
    row = paper.row(name)
    cfg = compose_cfg(f"experiment={name}")
    assert path.read_text().startswith("# @package _global_")
    assert cfg.paper == name  # the file names its row; the figures have one home, paper.py
    assert paper.figures(cfg.paper) == {"top1_error": row.top1_error, "top5_error": row.top5_error}
    assert cfg.eval.protocol == row.protocol
    assert cfg.task == ("train" if row.table == 3 else "eval")
    if "+" not in row.config:
        assert cfg.model.config == row.config
    if row.table == 3:
        jitter = isinstance(row.train_scale, tuple)
        assert cfg.data.scale == ("jitter" if jitter else row.train_scale) and cfg.eval.scales is None
        datamodule = ImageNetDataModule(cfg.data.root, cfg.data.scale)
        assert (datamodule.test_scale,) == row.test_scales  # Q = S, or 384 for jittered S
        assert cfg.optim.lr == (paper.RECIPE["lr"] if row.train_scale == 256 else paper.RECIPE["lr_finetune"])
    else:
        assert tuple(cfg.eval.scales) == row.test_scales

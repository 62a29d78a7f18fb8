"""task=train: build from the config, fit with the paper's recipe, test with the experiment's protocol, write
results.json."""

from __future__ import annotations

import logging
import time

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..app.job import choice, container, output_dir
from ..app.results import write_results
from ..app.trainer import build_trainer
from ..checkpoints.read import check_checkpoint, checkpoint_spec, net_state, read_vgg_checkpoint, resume_path
from ..data.classes import class_names
from ..data.datamodule import batch_plan
from ..evaluation.evaluator import run_evaluation
from ..evaluation.task import torchvision_net
from ..models.warm_start import warm_start
from ..paper import parent
from .module import VGGClassifier
from .recipe_settings import check_start

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
    log.info(
        "global batch %d = %d process(es) x %d images x %d accumulation step(s)",
        datamodule.batch_size,
        trainer.world_size,
        device_batch,
        steps,
    )
    return steps


def warn_if_cold(cfg: DictConfig) -> None:
    """A Table 3 row run on its own without the warm start the paper gave it."""
    experiment = choice("experiment")
    source = parent(experiment)
    if source is not None:
        log.warning(
            "%s starts, in the paper, from table3/%s's weights: pass model.init_from=<its checkpoints/last.ckpt>, "
            "or run the whole chain with python -m vgg_lightning.reproduce table3",
            experiment,
            source.name,
        )


def initial_weights(cfg: DictConfig) -> tuple[dict, dict, str] | None:
    """(state dict, its net's spec, path) that the net starts from: a checkpoint of ours (model.init_from) or
    torchvision's file (weights=torchvision); None: model.init. Read and checked before any work."""
    check_start(cfg.weights, cfg.model.init_from)
    if cfg.weights:
        net, path = torchvision_net(cfg)
        return net.state_dict(), net.spec(), path
    if cfg.model.init_from:
        source = read_vgg_checkpoint(cfg.model.init_from)
        return net_state(source), checkpoint_spec(source), cfg.model.init_from
    return None


def train(cfg: DictConfig) -> dict | None:
    started = time.time()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    num_classes = datamodule.num_classes  # validates the data folders (and writes the demo set) before any work
    ckpt_path = resume_path(cfg.ckpt_path, output_dir())
    if ckpt_path is not None:
        check_checkpoint(ckpt_path, cfg.model, num_classes)
    classes, wnids = class_names(datamodule.classes())
    module = VGGClassifier(
        model=container(cfg.model),
        optim=container(cfg.optim),
        num_classes=num_classes,
        train_scale=datamodule.scale_label,
        classes=classes,
        wnids=wnids,
        normalize=datamodule.normalizer.normalize,
        test_scale=datamodule.test_scale,
    )
    initial = initial_weights(cfg)
    if initial and ckpt_path is None:
        warm_start(module.net, *initial)
    elif not initial:
        warn_if_cold(cfg)
    else:
        log.info("resuming from %s: the initial weights (%s) were applied when this run began", ckpt_path, initial[2])
    trainer = build_trainer(cfg)
    accumulate_to_global_batch(trainer, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    # the final weights (last.ckpt), as the paper tests its nets; `center` is what validation measures
    tested = run_evaluation(trainer, [module.net], datamodule, cfg.eval, cfg.model.channels_last)
    return write_results(trainer, cfg, started, num_classes=num_classes, train_scale=datamodule.scale_label, **tested)

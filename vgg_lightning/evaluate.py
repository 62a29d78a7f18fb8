"""task=eval ckpt_path=...: test a trained net on the validation set, write results.json."""

from __future__ import annotations

import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from .module import VGGClassifier
from .runs import CheckpointError, build_trainer, check_checkpoint, errors, write_results


def evaluate(cfg: DictConfig) -> dict | None:
    started = time.time()
    if not cfg.ckpt_path:
        raise CheckpointError("task=eval needs the weights to test: ckpt_path=<run dir>/checkpoints/last.ckpt")
    datamodule = instantiate(cfg.data)
    check_checkpoint(cfg.ckpt_path, cfg.model, datamodule.num_classes)
    module = VGGClassifier.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    trainer = build_trainer(cfg)
    trainer.validate(module, datamodule=datamodule)
    return write_results(
        trainer,
        cfg,
        started,
        num_classes=datamodule.num_classes,
        train_scale=module.hparams.get("train_scale"),
        test_scales=[datamodule.test_scale],
        protocol=cfg.eval.protocol,
        **errors(trainer),
    )

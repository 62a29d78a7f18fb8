"""task=train: build from the config, fit, write results.json."""

from __future__ import annotations

import time

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from .module import VGGClassifier
from .runs import build_trainer, check_checkpoint, container, errors, resume_path, write_results


def train(cfg: DictConfig) -> dict | None:
    started = time.time()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    num_classes = datamodule.num_classes  # validates the data folders (and writes the demo set) before any work
    ckpt_path = resume_path(cfg)
    if ckpt_path is not None:
        check_checkpoint(ckpt_path, cfg.model, num_classes)
    module = VGGClassifier(model=container(cfg.model), optim=container(cfg.optim), num_classes=num_classes)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return write_results(
        trainer,
        cfg,
        started,
        num_classes=num_classes,
        train_scale=datamodule.scale_label,
        test_scales=[datamodule.test_scale],
        protocol="center",
        **errors(trainer),
    )

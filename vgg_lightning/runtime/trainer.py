"""The Trainer of a job: conf/trainer with conf/callbacks and conf/logger, its W&B run named after the job."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..tracking.runs import build_loggers, wandb_run_args
from ..training import ddp
from .job import choice, container, output_dir
from .launch import cluster_plugins


def job_settings(cfg: DictConfig, known: Mapping | None = None) -> dict:
    """config, S, Q, experiment and task of this job, as results.json will spell them. `known` holds what the
    job has already worked out (an evaluation: the checkpoints' configs and S, its Q); the rest comes from
    the config, through the datamodule's own rules (jitter, Q's default; cheap: no files are read)."""
    known = dict(known or {})
    if not {"config", "train_scale", "test_scales"} <= known.keys():
        data = instantiate(cfg.data)
        known = {"config": cfg.model.config, "train_scale": data.scale_label, "test_scales": [data.test_scale], **known}
    return {**known, "experiment": choice("experiment"), "task": cfg.task}


def _wandb_args(cfg: DictConfig, known: Mapping | None) -> dict:
    hydra = HydraConfig.get()
    sweep = (str(hydra.sweep.dir), hydra.job.num) if hydra.mode == RunMode.MULTIRUN else None
    return wandb_run_args(container(cfg), job_settings(cfg, known), output_dir(), sweep)


def build_trainer(cfg: DictConfig, job: Mapping | None = None, **overrides) -> L.Trainer:
    """The Trainer of conf/trainer with conf/callbacks and conf/logger; `job` names what the job already knows
    of itself (config, train_scale, test_scales) for the W&B run's name and tags."""
    callbacks = [
        instantiate(c)
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None and (cfg.trainer.get("enable_progress_bar", True) or "progress_bar" not in name)
    ]
    loggers = build_loggers(cfg, lambda: _wandb_args(cfg, job))
    plugins = [*(instantiate(cfg.trainer.get("plugins")) or []), *cluster_plugins()]
    ddp.register()  # trainer.strategy=ddp (or `auto` on several devices): DDP with VGG's buckets
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None, **overrides)

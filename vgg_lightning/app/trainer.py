"""The Trainer of a job: conf/trainer with conf/callbacks and conf/logger, its W&B run named after the job."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..checkpoints.write import check_safe_reading, safe_plugins
from ..tracking.wandb_runs import build_loggers, is_wandb, wandb_run_args
from ..training import ddp
from .job import group_choice, output_dir, plain_config
from .launch import cluster_plugins


def job_settings(cfg: DictConfig, job: Mapping) -> dict:
    """config, S, Q, experiment and task of this job, as results.json spells them: `job` holds what the task
    has worked out (config, train_scale, test_scales), the rest is the job's own."""
    return {**job, "experiment": group_choice("experiment"), "task": cfg.task}


def wandb_args(cfg: DictConfig, job: Mapping) -> dict:
    """The W&B run of this job: named and tagged after what the task knows of itself, filed under its sweep."""
    hydra = HydraConfig.get()
    sweep = (str(hydra.sweep.dir), hydra.job.num) if hydra.mode == RunMode.MULTIRUN else None
    return wandb_run_args(plain_config(cfg), job_settings(cfg, job), output_dir(), sweep)


def build_trainer(cfg: DictConfig, job: Mapping | None = None, log: bool = True, **overrides) -> L.Trainer:
    """The Trainer of conf/trainer with conf/callbacks and conf/logger (none without `log`); `job` names what the
    task knows of itself (config, train_scale, test_scales) for the W&B run's name and tags (needed with a W&B
    logger)."""
    callbacks = [
        instantiate(c)
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None and (cfg.trainer.get("enable_progress_bar", True) or "progress_bar" not in name)
    ]
    loggers_cfg = (cfg.get("logger") or {}) if log else {}
    uses_wandb = job is not None and any(is_wandb(node) for node in loggers_cfg.values())
    loggers = build_loggers(loggers_cfg, wandb_args(cfg, job) if uses_wandb else None)
    plugins = safe_plugins([*(instantiate(cfg.trainer.get("plugins")) or []), *cluster_plugins()])
    ddp.register()  # trainer.strategy=ddp (or `auto` on several devices): DDP with VGG's buckets
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins, **overrides)
    check_safe_reading(trainer)  # every checkpoint Lightning reads goes through checkpoints.read
    return trainer

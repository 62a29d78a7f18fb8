"""The Trainer of a job: conf/trainer with conf/callbacks and conf/logger, its W&B run named after the job."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..tracking.wandb_runs import build_loggers
from .job import group_choice, output_dir, plain_config
from .launch import cluster_plugins


def job_settings(cfg: DictConfig, job: Mapping) -> dict:
    """config, S, Q, experiment and task of this job, as results.json spells them: `job` holds what the task
    has worked out (config, train_scale, test_scales), the rest is the job's own."""
    return {**job, "experiment": group_choice("experiment"), "task": cfg.task}


def build_trainer(cfg: DictConfig, job: Mapping, **overrides) -> L.Trainer:
    """The Trainer of conf/trainer with conf/callbacks and conf/logger; `job` names what the task knows of
    itself (config, train_scale, test_scales) for the W&B run's name and tags."""
    callbacks = [
        instantiate(c)
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None and (cfg.trainer.get("enable_progress_bar", True) or "progress_bar" not in name)
    ]
    hydra = HydraConfig.get()
    sweep = (str(hydra.sweep.dir), hydra.job.num) if hydra.mode == RunMode.MULTIRUN else None
    loggers = build_loggers(cfg.get("logger"), plain_config(cfg), job_settings(cfg, job), output_dir(), sweep)
    plugins = [*(instantiate(cfg.trainer.get("plugins")) or []), *cluster_plugins()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None, **overrides)

"""What a train and an eval job share: the trainer, checkpoint checks, and the results file."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import tracking

log = logging.getLogger(__name__)


def output_dir() -> Path:
    """The Hydra run dir (never the working directory: Hydra >= 1.2 does not chdir)."""
    return Path(HydraConfig.get().runtime.output_dir)


def choice(group: str) -> str | None:
    """Which file of a config group this run composed (e.g. 'table3/D_jitter' for 'experiment')."""
    return HydraConfig.get().runtime.choices.get(group)


def container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def build_trainer(cfg: DictConfig, job: dict | None = None, **overrides) -> L.Trainer:
    """The Trainer of conf/trainer with conf/callbacks and conf/logger; `job` names what the job already knows
    of itself (config, train_scale, test_scales) for the W&B run's name and tags."""
    callbacks = [
        instantiate(c)
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None and (cfg.trainer.get("enable_progress_bar", True) or "progress_bar" not in name)
    ]
    loggers = tracking.build_loggers(cfg, job)
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


class CheckpointError(ValueError):
    """A checkpoint that cannot serve this run: missing, unreadable, or of another net."""


def read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        # mmap: only the parts we look at are read, however large the optimiser state
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path!r} (corrupt, or not a checkpoint): {error}") from error


def read_vgg_checkpoint(path: str, num_classes: int | None = None) -> dict:
    """A vgg-lightning checkpoint (its hyper-parameters rebuild its net), refused before any work when it is
    not one, or when its net has another number of classes than the data."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    if "config" not in (hparams.get("model") or {}):
        raise CheckpointError(f"{path!r} is not a vgg-lightning checkpoint (no model settings inside)")
    if num_classes is not None and hparams.get("num_classes") != num_classes:
        raise CheckpointError(f"{path!r} was trained on {hparams.get('num_classes')} classes, the data has {num_classes}")
    return checkpoint


def check_checkpoint(path: str, model: DictConfig, num_classes: int | None = None) -> dict:
    """Refuse, before any work, a checkpoint whose net differs from the one this run asks for; returns it."""
    checkpoint = read_vgg_checkpoint(path, num_classes)
    saved = checkpoint["hyper_parameters"]["model"]
    asked = {"config": model.config, "width": float(model.width)}
    found = {"config": saved["config"], "width": float(saved.get("width", 1.0))}
    if found != asked:
        differences = ", ".join(f"{k} {found[k]} (this run: {asked[k]})" for k in asked if found[k] != asked[k])
        raise CheckpointError(
            f"checkpoint {path!r} holds another net: {differences}. Pass model={found['config']} "
            f"model.width={found['width']} (or the right checkpoint)"
        )
    return checkpoint


def resume_path(cfg: DictConfig) -> str | None:
    """ckpt_path=last means the newest of this run dir's last.ckpt and the checkpoint Lightning saves on
    SLURM's SIGUSR1 (hpc_ckpt_N.ckpt); when there is none yet, start fresh and say so."""
    if cfg.ckpt_path != "last":
        return cfg.ckpt_path
    run_dir = output_dir()
    candidates = [*run_dir.glob("checkpoints/last.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    if not candidates:
        log.info("ckpt_path=last: no checkpoint in %s yet, starting fresh", run_dir / "checkpoints")
        return None
    return str(max(candidates, key=lambda path: path.stat().st_mtime))


def write_results(trainer: L.Trainer, cfg: DictConfig, started: float, **fields) -> dict | None:
    """results.json in the run dir, written by rank 0 only, atomically (a reader never sees half a file)."""
    if not trainer.is_global_zero:
        return None
    results = {
        "task": cfg.task,
        "config": cfg.model.config,
        "experiment": choice("experiment"),
        "dataset": choice("data"),
        **fields,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_time_s": round(time.time() - started, 1),
        "paper": container(cfg.paper) if cfg.get("paper") else None,
    }
    path = output_dir() / "results.json"
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(staging, path)
    log.info("results: top-1 error %.2f%%, top-5 error %.2f%% -> %s", results["top1_error"], results["top5_error"], path)
    tracking.log_results(trainer, results)
    return results


def errors(trainer: L.Trainer) -> dict:
    if "val/top1_error" not in trainer.callback_metrics:
        # fit stopped at trainer.max_steps inside the first epoch, before any validation: validate the
        # weights it ended with, so that a short run (a smoke test, a sweep's dry run) still has results
        trainer.validate(trainer.lightning_module, datamodule=trainer.datamodule, verbose=False)
    metrics = trainer.callback_metrics
    return {k: round(float(metrics[f"val/{k}"]), 3) for k in ("top1_error", "top5_error")}

"""results.json: what a train or eval job found, in the keys other tools read (see the README)."""

from __future__ import annotations

import json
import logging
import os
import time

import lightning as L
from omegaconf import DictConfig

from .. import paper
from ..tracking.runs import log_results
from .job import choice, container, output_dir
from .run_dir import RESULTS

log = logging.getLogger(__name__)


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
    }
    # the paper's figures only for a run on its data: a demo run set against them would give a bogus delta
    ilsvrc = paper.on_ilsvrc2012(results["dataset"], results.get("num_classes"))
    results["paper"] = container(cfg.paper) if cfg.get("paper") and ilsvrc else None
    path = output_dir() / RESULTS
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(staging, path)
    log.info(
        "results: top-1 error %.2f%%, top-5 error %.2f%% -> %s", results["top1_error"], results["top5_error"], path
    )
    log_results(trainer, results)
    return results

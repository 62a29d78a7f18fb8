"""results.json: what a train, eval or transfer job found, in the keys other tools read (docs/cli.md)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from .. import paper
from ..tracking.wandb_runs import log_results
from .job import group_choice, output_dir, plain_config
from .run_dir import RESULTS

log = logging.getLogger(__name__)


def job_results(cfg: DictConfig, started: float, **fields) -> dict:
    """The fields of results.json: the job's task, config, experiment and data set (`fields` may name others),
    what it found, its wall time and the paper's figures for it (the experiment's, unless `paper=` is given)."""
    given = fields.pop("paper", None)
    results = {
        "task": cfg.task,
        "config": cfg.model.config,
        "experiment": group_choice("experiment"),
        "dataset": cfg.data.get("name") or group_choice("data"),
        **fields,
        "wall_time_s": round(time.time() - started, 1),
    }
    # the experiment's ImageNet figures only for a run on ILSVRC-2012: a demo run set against them would give a
    # bogus delta (a job that names its own figures, a transfer run's Table 11 cell, passes them as `paper`)
    on_its_data = paper.on_ilsvrc2012(results["dataset"], results.get("num_classes"))
    results["paper"] = given or (paper_figures(cfg.get("paper")) if on_its_data else None)
    return results


def paper_figures(named) -> dict | None:
    """The figures of `paper:`: the row or finding an experiment names (their one home is paper.py), or, from a
    file of one's own, figures written out; None when there are none."""
    if isinstance(named, str):
        return paper.figures(named)
    return plain_config(named) if named else None


def save_results(results: dict) -> Path:
    """results.json in the run dir, atomically (a reader never sees half a file); refused when a number in it is
    not finite (the net's outputs overflowed: no error rate to report)."""
    unfinished = [key for key, value in results.items() if isinstance(value, float) and not math.isfinite(value)]
    if unfinished:
        raise ValueError(
            f"the {results.get('task')} results are not finite ({', '.join(f'{k}: {results[k]}' for k in unfinished)}): "
            "the net's outputs are NaN or infinite; no results.json written"
        )
    path = output_dir() / RESULTS
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(staging, path)
    return path


def write_results(trainer: L.Trainer, cfg: DictConfig, started: float, **fields) -> dict | None:
    """results.json of a train or eval job, written by rank 0 only."""
    if not trainer.is_global_zero:
        return None
    results = job_results(cfg, started, **fields, epochs=trainer.current_epoch, steps=trainer.global_step)
    if trainer.fast_dev_run:  # debug=fdr: errors of one batch, not results to keep
        log.info("fast_dev_run: no results.json (top-1 error of one batch: %.2f%%)", results["top1_error"])
        return results
    path = save_results(results)
    log.info(
        "results: top-1 error %.2f%%, top-5 error %.2f%% -> %s", results["top1_error"], results["top5_error"], path
    )
    log_results(trainer, results)
    return results

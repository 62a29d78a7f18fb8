"""Hyper-parameter search (hparams_search=optuna): what each trial returns to the sweeper, and the best
trial named once the sweep has ended."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .run_dir import RESULTS

METRICS = ("top1_error", "top5_error")  # the results.json keys a search can minimise
OPTUNA_RESULTS = "optimization_results.yaml"  # written by the Optuna sweeper into the sweep folder
BEST_TRIAL = "best_trial.yaml"


def check_objective(key: str | None, multirun: bool = False, launcher: str | None = None) -> None:
    """Before any work: optimized_metric names a key that results.json will have, and a search does not run
    under torchrun, where every rank would sweep its own study (and only rank 0 has results to return)."""
    if key is None:
        return
    if key not in METRICS:
        raise SystemExit(f"optimized_metric={key!r}: choose one of {', '.join(METRICS)} (a results.json key)")
    if multirun and launcher == "torchrun":
        raise SystemExit(
            "a search (optimized_metric with -m) cannot run under torchrun: every rank would run its own study. "
            "Use hydra/launcher=slurm (SLURM starts each trial's processes), or one process per trial"
        )


def objective(results: Mapping | None, key: str | None):
    """The value the app returns to a sweeper: results.json's `key` (None on ranks > 0, which write none);
    without an optimized_metric, the task's own return value."""
    if key is None:
        return results
    return None if results is None else float(results[key])


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(path)) if path.exists() else []


def best_trial(sweep_dir: Path, key: str) -> dict | None:
    """The job of the sweep folder whose overrides carry the Optuna study's best parameters."""
    found = OmegaConf.load(sweep_dir / OPTUNA_RESULTS)
    best = {name: value for name, value in found.best_params.items()}
    for results in sorted(sweep_dir.glob(f"*/{RESULTS}"), key=lambda p: int(p.parent.name)):
        job = results.parent
        given = dict(o.split("=", 1) for o in _overrides(job) if "=" in o)
        if all(name in given and _same(given[name], value) for name, value in best.items()):
            # the rerun is a single run: without the search's own choice (which makes it a multirun)
            overrides = [o for o in _overrides(job) if not o.startswith("hparams_search=")]
            return {
                "job": int(job.name),
                "run_dir": str(job),
                key: json.loads(results.read_text()).get(key),
                "params": best,
                "overrides": overrides,
                "command": shlex.join(["python", "-m", "vgg_lightning", *overrides]),
            }
    return None


def _same(text: str, value) -> bool:
    try:
        return float(text) == float(value)
    except ValueError:
        return text == str(value)


class BestTrial(Callback):
    """At the end of an Optuna sweep: print the best trial's job folder, its error and overrides, and write
    them to <sweep dir>/best_trial.yaml beside Optuna's optimization_results.yaml."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / OPTUNA_RESULTS).exists():
            return
        key = config.get("optimized_metric") or METRICS[0]
        best = best_trial(sweep_dir, key)
        if best is None:
            print(f"best trial: no job of {sweep_dir} has the best parameters of {OPTUNA_RESULTS}")
            return
        OmegaConf.save(OmegaConf.create(best), sweep_dir / BEST_TRIAL)
        print(
            f"best trial: job {best['job']} ({best['run_dir']}), {key} {best[key]}\n"
            f"  overrides: {' '.join(best['overrides'])}\n  rerun it: {best['command']}\n"
            f"  -> {sweep_dir / BEST_TRIAL}"
        )

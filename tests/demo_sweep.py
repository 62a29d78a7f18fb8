"""One real two-job multirun on the demo set, logged to W&B offline, shared by test_tracking and test_report: a
job costs seconds of imports and training on a 2-core machine, so it runs once per pytest run."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import FAST, run_cli, shared_dir
from filelock import FileLock

# what the sweep's jobs log at every step (FAST trains 2 batches: the throughput window and the logging
# interval must be shorter than that for images/s and the step loss to reach W&B)
LOG_EVERY_STEP = ["trainer.log_every_n_steps=1"]
FAST_WANDB = [o for o in FAST if not o.startswith("logger=")] + ["logger=wandb", *LOG_EVERY_STEP]


def wandb_env(cache: Path) -> dict:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(cache), PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    return env


def demo_sweep(tmp_path_factory, demo_root: str) -> Path:
    """`python -m vgg_lightning +sweep=depth experiment=demo model=A,B ... logger=wandb` (the depth sweep
    file, narrowed to A and B): its sweep dir, with jobs 0 (A) and 1 (B). Run once for all xdist workers."""
    root = shared_dir(tmp_path_factory) / "sweep"
    sweep_dir = root / "depth-sweep"
    root.mkdir(exist_ok=True)
    with FileLock(str(root / "sweep.lock")):
        if not all((sweep_dir / job / "results.json").exists() for job in ("0", "1")):
            run_cli(
                "+sweep=depth", "experiment=demo", "model=A,B", f"data.root={demo_root}", *FAST_WANDB,
                f"hydra.sweep.dir={sweep_dir}", env=wandb_env(root / "cache"), cwd=root,
            )  # fmt: skip
    return sweep_dir

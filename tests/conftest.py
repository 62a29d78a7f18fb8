"""Shared fixtures: generated image folders, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import slurm  # noqa: F401  (the real single-node SLURM of the SLURM tests)

from vgg_lightning.data.demo import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """A small demo set (8 classes, 4 train and 2 val images each) in the ImageNet layout."""
    return make_demo_dataset(str(tmp_path_factory.mktemp("data") / "demo"), train_per_class=4, val_per_class=2)


@pytest.fixture
def cli_env(tmp_path) -> dict:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    return env


# Overrides that make a CLI training run take seconds: a tiny net, a few steps, no worker processes.
FAST = [
    "model.width=0.0625",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "logger=csv",
]


def run_cli(*args: str, env: dict, cwd: Path, check: bool = True, module: str = "vgg_lightning", **popen):
    """`python -m vgg_lightning ARGS` as a user types it."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **popen
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
        )
    return result


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())

"""The fixtures: generated image folders, one demo training shared by the tests that read a trained run, the
CLI's environment, the real single-node SLURM of the SLURM tests; and the xdist grouping hook. Helpers are
helpers.py's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import FAST, run_cli, shared_dir
from slurm_cluster import slurm  # noqa: F401  (the real single-node SLURM of the SLURM tests)

from vgg_lightning.data.demo import make_demo_dataset

DEMO_OUTPUT = "demo_run.output.json"  # beside the demo's run dir: what it printed


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """A small demo set (8 classes, 4 train and 2 val images each) in the ImageNet layout, written once for all
    workers (make_demo_dataset renames a finished set into place)."""
    return make_demo_dataset(str(shared_dir(tmp_path_factory) / "demo"), train_per_class=4, val_per_class=2)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The run dir of the demo as the README runs it (`python -m vgg_lightning experiment=demo`, its data set
    generated into a cache of its own): the suite's one full training, trained once by whichever worker asks
    first, then read by the tests that need a trained net, its checkpoint or what the demo printed (in
    `demo_output`). Tests read it and never write into it."""
    shared = shared_dir(tmp_path_factory)
    run_dir = shared / "demo_run"
    with FileLock(str(shared / "demo_run.lock")):
        if not (run_dir / "results.json").exists():
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTHONWARNINGS"))}
            env.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(shared / "demo_run_cache"))
            result = run_cli("experiment=demo", f"hydra.run.dir={run_dir}", env=env, cwd=shared)
            (shared / DEMO_OUTPUT).write_text(json.dumps({"stdout": result.stdout, "stderr": result.stderr}))
    return run_dir


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory, demo_root) -> Path:
    """The run dir of a two-step training of the demo's net on `demo_root` (`experiment=demo`, FAST): the
    baseline of the tests that set another training beside it (the same command again, the DALI loader)."""
    shared = shared_dir(tmp_path_factory)
    run_dir = shared / "fast_run"
    with FileLock(str(shared / "fast_run.lock")):
        if not (run_dir / "results.json").exists():
            env = {**os.environ, "WANDB_MODE": "offline", "VGG_LIGHTNING_CACHE": str(shared / "fast_run_cache")}
            run_cli("experiment=demo", f"data.root={demo_root}", *FAST, f"hydra.run.dir={run_dir}", env=env, cwd=shared)
    return run_dir


@pytest.fixture(scope="session")
def demo_output(demo_run) -> dict:
    """What the demo printed, as a user sees it: {"stdout": ..., "stderr": ...}."""
    return json.loads((demo_run.parent / DEMO_OUTPUT).read_text())


@pytest.fixture
def cli_env(tmp_path) -> dict:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    return env


def pytest_collection_modifyitems(config, items):
    """`--dist loadgroup` sends the tests whose id ends in `@<group>` to one worker. pytest-xdist 3.8's own hook
    adds the suffix by setting `item._nodeid`, which pytest 9.2 no longer reads (its ids live in `item._id`):
    without this the SLURM tests start a cluster on each worker and the resume tests train `straight` twice.
    Test plumbing only; a no-op once xdist's suffix shows up in the id."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})  # fmt: skip
        suffixed = f"{item.nodeid}@{'_'.join(groups)}"
        if not groups or "@" in item.nodeid:
            continue
        if hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(suffixed)
        else:
            item._nodeid = suffixed

"""Launchers: torchrun (one run dir for all ranks, multirun sweeps on several processes), SLURM through
submitit, and the clear refusal of the combination Lightning cannot do (-m with processes it spawns)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from helpers import REPO, read_results, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vgg_lightning.app.launch import external_launcher, rank_consistent_overrides
from vgg_lightning.app.resolvers import register_resolvers


def test_torchrun_ranks_share_one_run_dir_and_only_rank_0_writes_the_config():
    env = {"TORCHELASTIC_RUN_ID": "abc123", "RANK": "1"}
    assert rank_consistent_overrides(["model=D"], env) == [
        "hydra.run.dir=outputs/${task}/torchrun-abc123",
        "hydra.sweep.dir=multirun/torchrun-abc123",
        "hydra.output_subdir=null",
    ]
    assert rank_consistent_overrides(["hydra.run.dir=x", "hydra.sweep.dir=y"], {**env, "RANK": "0"}) == []
    assert rank_consistent_overrides(["model=D"], {}) == []  # not under torchrun: nothing changes
    with pytest.raises(SystemExit, match="--rdzv-id"):
        rank_consistent_overrides([], {"TORCHELASTIC_RUN_ID": "none"})


def test_srun_ranks_share_one_run_dir_that_a_requeued_job_finds_again():
    step = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}
    assert rank_consistent_overrides(["model=D"], step) == [
        "hydra.run.dir=outputs/${task}/slurm-4242.0",
        "hydra.sweep.dir=multirun/slurm-4242.0",
        "hydra.output_subdir=null",
    ]
    assert rank_consistent_overrides([], {**step, "SLURM_PROCID": "0"})[-1] == "hydra.sweep.dir=multirun/slurm-4242.0"
    # a single task (an interactive salloc shell, or sbatch without srun) keeps Hydra's own run dirs
    assert rank_consistent_overrides([], {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "1"}) == []
    with pytest.raises(SystemExit, match="--rdzv-id"):
        rank_consistent_overrides([], {"TORCHELASTIC_RUN_ID": "none"})


def test_external_launcher_detection():
    assert external_launcher({"TORCHELASTIC_RUN_ID": "x"}) == "torchrun"
    assert external_launcher({"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "vgg"}) == "slurm"
    assert external_launcher({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bash"}) is None  # an interactive shell
    assert external_launcher({}) is None


def test_multirun_with_lightning_spawned_ddp_is_refused_before_any_work(cli_env, tmp_path):
    result = run_cli(
        "-m",
        "model=A,B",
        "trainer.devices=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env=cli_env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert (
        "trainer.devices=2" in result.stderr and "torchrun" in result.stderr and "hydra/launcher=slurm" in result.stderr
    )
    assert not list((tmp_path / "sweep").glob("*/results.json"))


def test_slurm_launcher_gives_one_task_per_device_and_the_node_count():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config", ["hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2"], return_hydra_config=True
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    resolved = {
        key: OmegaConf.select(cfg, f"hydra.launcher.{key}") for key in ("tasks_per_node", "nodes", "gpus_per_node")
    }
    assert resolved == {"tasks_per_node": 4, "nodes": 2, "gpus_per_node": 4}


def test_depth_sweep_on_two_processes_through_torchrun(cli_env, tmp_path, demo_root):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    sweep = tmp_path / "sweep"
    result = run_cli(
        "--standalone", "--nproc_per_node=2", "-m", "vgg_lightning",
        "-m", "experiment=demo", "model=A,B", f"data.root={demo_root}", "model.width=0.0625", "data.batch_size=8",
        "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=csv",
        "trainer.devices=2", "trainer.accelerator=cpu", "trainer.strategy=ddp", f"hydra.sweep.dir={sweep}",
        env=cli_env, cwd=tmp_path, module="torch.distributed.run",
    )  # fmt: skip
    assert torchrun is not None  # the same entry point as the `torchrun` command users type
    # what torchrun ran: two processes, each joining the process group, and each job split over both
    output = result.stdout + result.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in output and "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    assert output.count("global batch 8 = 2 process(es) x 4 images") >= 2  # both jobs (A, B) on 2 processes
    assert [read_results(sweep / job)["config"] for job in ("0", "1")] == ["A", "B"]
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == ["0", "1", "multirun.yaml"]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()

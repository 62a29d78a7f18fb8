"""Presets a lightning-hydra-template user types first: trainer=cpu|gpu|ddp|ddp_sim, logger=tensorboard|many,
and a git-ignored conf/local/default.yaml."""

from __future__ import annotations

import subprocess

import pytest
from helpers import FAST, FAST_WANDB, REPO, compose_cfg, run_cli
from omegaconf import OmegaConf

from vgg_lightning.report.runs import training_curve
from vgg_lightning.report.wandb_files import read_wandb_run, wandb_run_files

PRESETS = {
    "cpu": {"accelerator": "cpu", "precision": "32-true"},
    "gpu": {"accelerator": "gpu"},
    "ddp": {"accelerator": "gpu", "devices": 4, "strategy": "ddp"},
    "ddp_sim": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "precision": "32-true"},
}


@pytest.mark.parametrize("preset", PRESETS)
def test_trainer_presets_change_only_what_they_name(preset):
    default, chosen = (OmegaConf.to_container(compose_cfg(*o).trainer) for o in ([], [f"trainer={preset}"]))
    changed = {key for key in default if chosen[key] != default[key]}
    assert changed <= set(PRESETS[preset]) and all(chosen[k] == v for k, v in PRESETS[preset].items())


def test_ddp_sim_runs_two_processes_and_only_rank_0_logs_to_wandb(cli_env, tmp_path, demo_root):
    run = tmp_path / "run"
    result = run_cli("experiment=demo", "trainer=ddp_sim", *FAST_WANDB, "print_config=true", f"data.root={demo_root}",
                     f"hydra.run.dir={run}", env=cli_env, cwd=tmp_path)  # fmt: skip
    # one W&B run (offline) for the two processes, each step logged once: rank 1 neither starts a run of its
    # own nor logs into rank 0's
    (wandb_file,) = wandb_run_files(run)
    logged = read_wandb_run(wandb_file)
    steps = [row["trainer/global_step"] for row in logged["history"] if "train/loss_step" in row]
    assert steps == [0, 1], logged["history"]
    # each rank's own log: rank 0's, and rank 1's (Lightning re-ran the command as job train_ddp_process_1)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in (run / "__main__.log").read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run / "train_ddp_process_1.log").read_text()
    assert "global batch 8 = 2 process(es) x 4 images" in (run / "__main__.log").read_text()
    assert result.stderr.count("composed config") == 1  # the config tree is rank 0's alone
    assert (run / "results.json").exists()


def test_logger_many_is_wandb_csv_and_tensorboard():
    assert set(compose_cfg("logger=many").logger) == {"wandb", "csv", "tensorboard"}


def test_tensorboard_event_files_are_read_by_the_report(cli_env, tmp_path, demo_root):
    run = tmp_path / "run"
    args = ["experiment=demo", *FAST, "trainer.max_epochs=2", "logger=tensorboard", f"data.root={demo_root}"]
    run_cli(*args, f"hydra.run.dir={run}", env=cli_env, cwd=tmp_path)
    assert list(run.glob("tensorboard/version_0/events.out.tfevents.*")) and not (run / "csv").exists()
    curve = training_curve(run)
    validated = sorted(step for step, values in curve.items() if "val/top1_error" in values)
    assert len(validated) == 2 and all("train/loss_epoch" in curve[step] for step in validated)
    report = tmp_path / "report"
    run_cli(str(run), "--out", str(report), module="vgg_lightning.report", env=cli_env, cwd=tmp_path)
    assert (report / "training_curves.png").exists()


def test_a_local_config_is_picked_up_and_ignored_by_git(cli_env, tmp_path):
    # what conf/local/default.yaml does, from a folder given with --config-dir (the repository's own stays
    # untouched while other tests run)
    (tmp_path / "mine" / "local").mkdir(parents=True)
    (tmp_path / "mine" / "local" / "default.yaml").write_text(
        "# @package _global_\npaths:\n  data_dir: /data/on/this/machine\nlogger:\n  wandb:\n    entity: my-team\n"
    )
    result = run_cli("--config-dir", str(tmp_path / "mine"), "--cfg", "job", env=cli_env, cwd=tmp_path)
    assert "data_dir: /data/on/this/machine" in result.stdout and "entity: my-team" in result.stdout
    # without one, nothing changes (the group is optional)
    assert "entity: null" in run_cli("--cfg", "job", env=cli_env, cwd=tmp_path).stdout
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=REPO)
    assert ignored.returncode == 0, "conf/local/default.yaml is not git-ignored"

"""The CLI as a user types it: `python -m vgg_lightning ...` in a subprocess."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import FAST, compose_cfg, read_results, run_cli

from vgg_lightning.models import CONFIGS
from vgg_lightning.report.runs import training_curve


@pytest.mark.parametrize("config", CONFIGS)
def test_every_model_composes(config):
    cfg = compose_cfg(f"model={config}")
    assert cfg.model.config == config and cfg.model.width == 1.0 and cfg.model.init == "gaussian"


def test_paper_defaults_live_in_config():
    cfg = compose_cfg()
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.factor) == (0.01, 0.9, 5e-4, 0.1)
    assert cfg.data.batch_size == 256 and cfg.data.scale == 256 and cfg.model.dropout == 0.5


def test_design_card_command_composes(cli_env, tmp_path):
    result = run_cli("model=E", "data.scale=jitter", "trainer.devices=4", "--cfg", "job", env=cli_env, cwd=tmp_path)
    assert "config: E" in result.stdout and "scale: jitter" in result.stdout and "devices: 4" in result.stdout
    assert not (tmp_path / "outputs").exists()  # --cfg does no work


def test_unknown_model_fails_before_any_work_listing_the_choices(cli_env, tmp_path):
    result = run_cli("model=F", env=cli_env, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "model/F" in result.stderr
    for config in CONFIGS:
        assert config in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_missing_data_root_names_the_path_and_the_fix(cli_env, tmp_path):
    result = run_cli(
        "data.root=/nowhere/imagenet",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
        env=cli_env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "/nowhere/imagenet" in result.stderr and "data.root=" in result.stderr and "experiment=demo" in result.stderr


def test_demo_train_then_eval(cli_env, tmp_path, demo_root, demo_run):
    run_dir = demo_run  # experiment=demo data.root=DEMO_ROOT *FAST, through the CLI
    common = ["experiment=demo", f"data.root={demo_root}", *FAST]

    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert len(list((run_dir / "checkpoints").glob("epoch*.ckpt"))) == 1  # the best by val top-1 error
    results = read_results(run_dir)
    assert results["task"] == "train" and results["config"] == "A" and results["experiment"] == "demo"
    assert results["num_classes"] == 8 and results["train_scale"] == 256 and results["test_scales"] == [256]
    assert results["steps"] == 2 and results["paper"] is None
    # the final test (center, the val view) is the last validation, image for image: the same top-1 error,
    # and its mean -log posterior equals the validation loss to 1e-4 (float sums in another order)
    last_val = [row for _, row in sorted(training_curve(run_dir).items()) if "val/loss" in row][-1]
    assert results["images"] == 16 and results["top1_error"] == pytest.approx(last_val["val/top1_error"], abs=1e-3)
    assert results["nll"] == pytest.approx(last_val["val/loss"], abs=1e-4)

    # evaluation needs only the val split (a root made by `prepare --splits val`)
    val_only = tmp_path / "val_only"
    shutil.copytree(Path(demo_root) / "val", val_only / "val")
    shutil.copy(Path(demo_root) / "demo.json", val_only)
    eval_dir = tmp_path / "eval"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    eval_args = ["task=eval", *common, f"data.root={val_only}", f"ckpt_path={ckpt}"]
    run_cli(*eval_args, f"hydra.run.dir={eval_dir}", env=cli_env, cwd=tmp_path)
    evaluated = read_results(eval_dir)
    assert evaluated["task"] == "eval" and evaluated["protocol"] == "center"
    # same weights, same val images, same view: data.normalize, the crop and the posterior all agree
    assert evaluated["top1_error"] == results["top1_error"] and evaluated["top5_error"] == results["top5_error"]
    assert evaluated["nll"] == pytest.approx(last_val["val/loss"], abs=1e-4)

    # a checkpoint of another config is refused before any work, and the run dir is left as it was
    wrong_dir = tmp_path / "wrong"
    result = run_cli(
        "task=eval",
        *common,
        "model=D",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={wrong_dir}",
        env=cli_env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0 and "config A (this run: D)" in result.stderr and "model=A" in result.stderr
    assert not (wrong_dir / "results.json").exists()

    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    result = run_cli(
        "task=eval",
        *common,
        f"ckpt_path={corrupt}",
        f"hydra.run.dir={wrong_dir}",
        env=cli_env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0 and "cannot read checkpoint" in result.stderr


def test_same_command_twice_gives_the_same_weights(cli_env, tmp_path, demo_root, demo_run):
    """demo_run's command again, in another process, run dir and cache: the same weights, bit for bit."""
    run_cli("experiment=demo", f"data.root={demo_root}", *FAST, f"hydra.run.dir={tmp_path / 'again'}", env=cli_env,
            cwd=tmp_path)  # fmt: skip
    weights = [
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        for run_dir in (demo_run, tmp_path / "again")
    ]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "cores, devices, env, most, expected",
    [(16, 1, {}, None, 15), (16, 4, {}, None, 3), (96, 8, {}, None, 11), (16, "0,1", {}, None, 7),
     (16, [0, 1, 2, 3], {}, None, 3), (16, 1, {}, 2, 2), (1, 1, {}, None, 0),
     (12, 4, {"SLURM_STEP_ID": "0", "SLURM_CPUS_PER_TASK": "12"}, None, 11),  # srun: the task's own cores
     (96, 1, {"LOCAL_WORLD_SIZE": "8"}, None, 11)],  # torchrun's 8 processes on this machine
)  # fmt: skip
def test_default_workers_are_this_machines_share_of_cores_per_training_process(
    monkeypatch, cores, devices, env, most, expected
):
    from vgg_lightning.app.resolvers import _workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    for name in ("SLURM_STEP_ID", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _workers(devices, most) == expected


def test_the_configs_take_the_workers_rule_with_the_trainers_devices(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    assert compose_cfg("trainer=ddp").data.num_workers == 3  # 4 GPUs
    assert compose_cfg("data=demo").data.num_workers == 2  # at most 2 for the demo

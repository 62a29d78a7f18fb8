"""The CLI as a user types it: `python -m vgg_lightning ...` in a subprocess."""

from __future__ import annotations

import os
import re

import pytest
import torch
from helpers import FAST, REPO, assert_one_line_error, compose_cfg, read_results, run_cli

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


def readme_demo_block() -> str:
    """What the README's demo section says the demo prints: its code block after the command's."""
    section = (REPO / "README.md").read_text().split("## The demo", 1)[1].split("\n## ", 1)[0]
    (command, printed) = re.findall(r"^```\w*\n(.*?)^```$", section, re.S | re.M)
    assert command.strip() == "python -m vgg_lightning experiment=demo"
    return printed


# what a quiet console does not print: the config tree, Lightning's model summary, its device lines and seed,
# our own plumbing, the misleading "last checkpoint" warnings of a fresh run, library notices, W&B's lines
NOISE = ("composed config", "Trainable params", "GPU available", "TPU available", "Seed set to", "MFU unknown",
         "speed-ups", "global batch", "ckpt_path", "srun", "LeafSpec", "v_num", "[INFO]", "wandb", "Warning")  # fmt: skip


def test_the_demo_prints_what_the_readme_shows_and_little_else(demo_run, demo_output):
    """`python -m vgg_lightning experiment=demo`, as the README runs it: its epoch table and results line are the
    README's block, the whole console is a progress bar and that summary, and none of the noise lines."""
    stdout, stderr = demo_output["stdout"], demo_output["stderr"]
    printed = stdout.replace(str(demo_run), "outputs/train/<date>/<time>")
    assert readme_demo_block() in printed, printed
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert len(lines) <= 25 and stderr.strip() == "", stdout + stderr  # 199 lines before, 157 of them the config
    assert [noise for noise in NOISE if noise in stdout + stderr] == []
    assert "Epoch 7/7" in stdout and "center Q=256" in stdout  # the progress bars: training, then the test


def test_the_demo_run_and_a_bare_eval_of_its_checkpoint(cli_env, tmp_path, demo_run):
    """The demo's run dir and results; `task=eval ckpt_path=<its last.ckpt>` alone tests the net on the data set
    it was trained on (the checkpoint names it), scaled as it was trained: the training's own errors."""
    assert (demo_run / "checkpoints" / "last.ckpt").exists() and (demo_run / ".hydra" / "config.yaml").exists()
    assert len(list((demo_run / "checkpoints").glob("epoch*.ckpt"))) == 1  # the best by val top-1 error
    results = read_results(demo_run)
    assert results["task"] == "train" and results["config"] == "A" and results["experiment"] == "demo"
    assert results["dataset"] == "demo" and results["num_classes"] == 8 and results["paper"] is None
    assert results["train_scale"] == 256 and results["test_scales"] == [256]
    assert (results["epochs"], results["steps"], results["images"]) == (8, 8 * 24, 192)
    # the final test (center, the val view) is the last validation, image for image: the same top-1 error,
    # and its mean -log posterior equals the validation loss to 1e-4 (float sums in another order)
    last_val = [row for _, row in sorted(training_curve(demo_run).items()) if "val/loss" in row][-1]
    assert results["top1_error"] == pytest.approx(last_val["val/top1_error"], abs=1e-3)
    assert results["nll"] == pytest.approx(last_val["val/loss"], abs=1e-4)

    ckpt = demo_run / "checkpoints" / "last.ckpt"
    run_cli("task=eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", env=cli_env, cwd=tmp_path)
    evaluated = read_results(tmp_path / "eval")
    assert evaluated["task"] == "eval" and evaluated["dataset"] == "demo" and evaluated["protocol"] == "center"
    assert (evaluated["top1_error"], evaluated["top5_error"]) == (results["top1_error"], results["top5_error"])
    assert evaluated["nll"] == pytest.approx(results["nll"], abs=1e-4)

    # refused before any work, in one line, the run dir left as it was: a checkpoint of another config than
    # the command line names, a file that is no checkpoint
    wrong_dir = tmp_path / "wrong"
    for args, said in (
        (["model=D"], "config A (this run: D)"),
        (["data.normalize=paper"], "data.normalize=torchvision"),
    ):
        result = run_cli("task=eval", *args, f"ckpt_path={ckpt}", f"hydra.run.dir={wrong_dir}", env=cli_env,
                         cwd=tmp_path, check=False)  # fmt: skip
        assert_one_line_error(result, said)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    result = run_cli("task=eval", f"ckpt_path={corrupt}", f"hydra.run.dir={wrong_dir}", env=cli_env, cwd=tmp_path,
                     check=False)  # fmt: skip
    assert_one_line_error(result, "cannot read checkpoint", "damaged or truncated")
    assert not (wrong_dir / "results.json").exists()


def test_same_command_twice_gives_the_same_weights(cli_env, tmp_path, demo_root, fast_run):
    """fast_run's command again, in another process, run dir and cache: the same weights, bit for bit."""
    run_cli("experiment=demo", f"data.root={demo_root}", *FAST, f"hydra.run.dir={tmp_path / 'again'}", env=cli_env,
            cwd=tmp_path)  # fmt: skip
    weights = [
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        for run_dir in (fast_run, tmp_path / "again")
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

"""Exact data parallelism: a 2-process DDP run (gloo, CPU) ends with the weights of a 1-process run with the
same global batch, as Sec. 3.3 of the paper says of its 4 GPUs."""

from __future__ import annotations

import json

import torch
from conftest import read_results, run_cli

# 32 demo images, global batch 8 (4 per process under DDP), 3 steps.
RUN = [
    "experiment=demo",
    "model.width=0.0625",
    # Dropout is off: its masks come from each process's own RNG stream, so 2 processes cannot draw the
    # masks that 1 process draws for the same samples. Augmentation needs no such switch: its randomness
    # is keyed by (seed, epoch, sample index), whichever process loads the sample.
    "model.dropout=0",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "logger=csv",
]


def state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def test_two_process_ddp_equals_one_process(cli_env, tmp_path, demo_root):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_cli(*RUN, f"data.root={demo_root}", f"hydra.run.dir={single}", env=cli_env, cwd=tmp_path)
    run_cli(
        *RUN,
        f"data.root={demo_root}",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"hydra.run.dir={ddp}",
        env=cli_env,
        cwd=tmp_path,
    )

    one, two = state(single), state(ddp)
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < 1e-5, f"DDP and single-process weights differ by up to {worst}"
    assert read_results(ddp)["steps"] == read_results(single)["steps"] == 3
    # the validation error covers the same 16 images either way (no padding samples under DDP)
    assert read_results(ddp)["top1_error"] == read_results(single)["top1_error"]
    # rank 1 re-ran the command into rank 0's run dir: one results file, no stray run folders
    assert not (tmp_path / "outputs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]
    assert json.loads((ddp / "results.json").read_text())["task"] == "train"

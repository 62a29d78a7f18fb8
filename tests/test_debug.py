"""debug=default|fdr|limit|overfit|profiler, as lightning-hydra-template users know them: each run short, its
own folder, no W&B, no checkpoint that a later resume could pick up."""

from __future__ import annotations

import csv
import re

import pytest
from helpers import compose_cfg, run_cli

MODES = ("default", "fdr", "limit", "overfit", "profiler")
# the demo, narrowed: a 1/16-width VGG-A, batches of 8 of the 32-image test set, loaded in the main process
NARROW = ["experiment=demo", "model.width=0.0625", "data.batch_size=8"]


@pytest.mark.parametrize("mode", MODES)
def test_debug_modes_override_the_experiment_and_keep_no_checkpoint(mode):
    cfg = compose_cfg("experiment=demo", f"debug={mode}")
    assert "wandb" not in cfg.logger  # never a W&B run
    assert cfg.callbacks.model_checkpoint is None and cfg.trainer.enable_checkpointing is False
    assert cfg.trainer.max_epochs == {"limit": 3, "overfit": 30}.get(mode, 1)  # the demo's 8 overridden
    assert cfg.data.num_workers == 0 and cfg.trainer.devices == 1


def test_fdr_runs_one_batch_of_each_and_writes_only_the_log(cli_env, tmp_path, demo_root):
    run = tmp_path / "run"
    result = run_cli(
        *NARROW,
        "debug=fdr",
        "print_config=true",
        f"data.root={demo_root}",
        f"hydra.run.dir={run}",
        env=cli_env,
        cwd=tmp_path,
    )
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "__main__.log"]  # no checkpoints, logger, results
    log = (run / "__main__.log").read_text()
    assert "fast_dev_run" in log and "`max_steps=1` reached" in log  # one training batch (and one of val)
    tested = int(re.search(r"center Q=\[256\]: (\d+) images", log).group(1))
    assert 0 < tested < 16  # one batch of the test protocol, not the 16 val images
    # the composed config, printed as a tree on stderr when the run starts (print_config=true)
    assert "composed config" in result.stderr and "fast_dev_run: true" in result.stderr


def test_overfit_drives_the_training_loss_close_to_zero(cli_env, tmp_path, demo_root):
    run = tmp_path / "run"
    args = [*NARROW, "debug=overfit", "trainer.overfit_batches=1", f"data.root={demo_root}", f"hydra.run.dir={run}"]
    run_cli(*args, env=cli_env, cwd=tmp_path)
    with (run / "csv" / "version_0" / "metrics.csv").open() as f:
        losses = [float(row["train/loss_epoch"]) for row in csv.DictReader(f) if row.get("train/loss_epoch")]
    assert len(losses) == 30  # no plateau stop: the schedule is off while overfitting
    assert losses[0] > 2.0  # from above chance (ln 8 = 2.08) ...
    assert losses[-1] < 0.05, losses  # ... to close to 0 (0.016 when written)
    assert not (run / "checkpoints").exists()


def test_profiler_writes_its_report_into_the_run_dir(cli_env, tmp_path, demo_root):
    run = tmp_path / "run"
    args = [*NARROW, "debug=profiler", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    run_cli(*args, f"data.root={demo_root}", f"hydra.run.dir={run}", env=cli_env, cwd=tmp_path)
    report = (run / "fit-profile.txt").read_text()
    assert "FIT Profiler Report" in report and "run_training_batch" in report
    assert (run / "test-profile.txt").exists()  # the test protocol's own

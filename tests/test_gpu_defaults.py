"""The GPU defaults, exercised on the CPU: torch.compile and bf16-mixed through the CLI, and a training step
that reads nothing back from the device between logging intervals (on a GPU each such read is a host-device
sync that drains the launch queue; benchmarks/gpu_check.py counts the real ones there)."""

from __future__ import annotations

import sys

import lightning as L
import torch
from helpers import FAST, REPO, read_results, run_cli

sys.path.insert(0, str(REPO / "benchmarks"))
from sync_count import HostSyncs, quiet_steps  # noqa: E402

from vgg_lightning.checkpoints.read import read_checkpoint
from vgg_lightning.training.callbacks import ImagesPerSecond, ProgressBar
from vgg_lightning.training.module import VGGClassifier

OPTIM = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 3, "max_decreases": 3}
TINY = {"config": "A", "width": 0.0625, "init": "xavier", "dropout": 0.5}


def test_compile_on_cpu_trains_saves_the_nets_own_keys_resumes_and_evaluates_eager(cli_env, tmp_path, demo_root):
    """torch.compile through dynamo and AOTAutograd (the `aot_eager` backend: Inductor's C++ code generation
    would take minutes on a CPU, and changes nothing of what is checked here)."""
    run_dir = tmp_path / "run"
    common = [
        "experiment=demo",
        f"data.root={demo_root}",
        *FAST,
        "trainer.limit_val_batches=1",
        "model.compile=aot_eager",
        f"hydra.run.dir={run_dir}",
    ]
    run_cli(*common, env=cli_env, cwd=tmp_path)
    log = (run_dir / "__main__.log").read_text()  # the run's log keeps what the quiet console leaves out
    assert "compile=True (aot_eager)" in log  # GPUSpeedups compiled the forward
    assert "the evaluation gets the eager net" in log  # ... and handed it back before the test protocol
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    net_keys = {k.removeprefix("net.") for k in state if k.startswith("net.")}
    assert net_keys == set(VGGClassifier(TINY, OPTIM, num_classes=8).net.state_dict())
    assert not [k for k in state if "_orig_mod" in k]
    assert read_results(run_dir)["steps"] == 2

    run_cli(*common, "ckpt_path=last", "trainer.max_epochs=2", env=cli_env, cwd=tmp_path)
    resumed = read_results(run_dir)
    assert resumed["steps"] == 4 and 0.0 <= resumed["top1_error"] <= 100.0


def test_bf16_mixed_on_cpu_trains(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / "run"
    run_cli(
        "experiment=demo",
        f"data.root={demo_root}",
        *FAST,
        "trainer.limit_val_batches=1",
        "trainer.precision=bf16-mixed",
        f"hydra.run.dir={run_dir}",
        env=cli_env,
        cwd=tmp_path,
    )
    results = read_results(run_dir)
    assert results["steps"] == 2 and 0.0 <= results["top1_error"] <= 100.0
    hparams = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "precision: bf16-mixed" in hparams


def test_a_training_step_waits_for_no_device_value_between_logging_intervals(tmp_path):
    """The step, the metrics, our callbacks, our progress bar and Lightning's loop around them: no read of a device
    value and no tensor made from a Python number on the device, except at the steps the loggers write (every
    log_every_n_steps); the bar shows the step's values read then."""
    steps, interval = 7, 3
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.randn(2, 3, 224, 224, generator=generator),
            "label": torch.randint(0, 8, (2,), generator=generator),
            "skipped": torch.tensor(0),
        }
        for _ in range(steps)
    ]
    audit, bar = HostSyncs(), ProgressBar()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        log_every_n_steps=interval,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        callbacks=[audit, bar, ImagesPerSecond()],  # the audit first: it closes a step before others act
    )

    class NoSchedule(VGGClassifier):
        def configure_optimizers(self):  # no validation here: the plateau schedule would want its metric
            return torch.optim.SGD(self.parameters(), lr=0.01)

    with audit:
        trainer.fit(NoSchedule(TINY, OPTIM, num_classes=8), torch.utils.data.DataLoader(batches, batch_size=None))
    assert len(audit.per_step) == steps
    quiet = quiet_steps(audit.per_step, interval)
    between = [events for step, events in enumerate(audit.events) if step and (step + 1) % interval]
    assert quiet and not any(quiet), between
    logged = [count for step, count in enumerate(audit.per_step) if (step + 1) % interval == 0]
    assert all(logged), audit.per_step  # the audit sees the reads the loggers make
    assert {"train/loss_step", "train/images_per_s"} <= set(bar._shown), bar._shown

"""Preemption: a run killed with SIGKILL (mid-epoch before an lr cut, in the first epoch, after SLURM's hpc
checkpoint), or stopped by a signal (Ctrl-C mid-step, SIGTERM during validation), and resumed ends exactly as one
that never stopped (weights, momentum buffers, lr, plateau schedule, step, logged rows), single-process and DDP;
a signal with nothing to save stops at once, exit 128 + its number; checkpoints are written atomically; resuming
with no checkpoint yet starts fresh and says so."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import FAST, STEPS, errors, run_cli, run_cli_calls, with_callbacks

from vgg_lightning.checkpoints.write import AtomicCheckpointIO, BackgroundCheckpointIO, PreemptibleCheckpoint
from vgg_lightning.report.runs import training_curve

# 32 demo images, batch 8: 4 steps an epoch (epoch 1 is steps 5-8); a checkpoint every 3 steps (3: in epoch 0,
# before any validation; 6: mid epoch 1; 9: mid epoch 2). The lr is too small for the val error to move, so
# with patience 0 the schedule cuts the lr at the end of epoch 1 and of epoch 2; after the 2nd decrease
# (max_decreases 1) training stops at the start of epoch 3: 12 steps, lr 1e-8. Dropout stays on.
RUN = [
    "experiment=demo",
    "model.width=0.0625",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.max_epochs=4",
    "optim.lr=1e-6",
    "optim.patience=0",
    "optim.max_decreases=1",
    "logger=csv",
    "callbacks.model_checkpoint.every_n_train_steps=3",
]
# Under DDP each of the 2 processes loads 4 images a step: the same 4 steps an epoch; each rank draws its own
# dropout masks from its own RNG stream, and each stream is in the checkpoint.
DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
TIMING = ("time", "per_s", "mfu")  # wall-clock figures: the only logged values allowed to differ


def end_state(run_dir: Path) -> dict:
    """Everything a resumed run must reproduce, from its last.ckpt and its metrics.csv files."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (optimizer,) = checkpoint["optimizer_states"]
    (schedule,) = checkpoint["lr_schedulers"]
    return {
        "step": checkpoint["global_step"],
        "epoch": checkpoint["epoch"],
        "lr": [group["lr"] for group in optimizer["param_groups"]],
        "schedule": {k: schedule[k] for k in ("last_epoch", "decreases", "best", "num_bad_epochs", "_last_lr")},
        "weights": checkpoint["state_dict"],  # the net and the training epoch's metric sums
        "momentum": {i: s["momentum_buffer"] for i, s in optimizer["state"].items()},
        "logged": {
            step: {k: v for k, v in row.items() if not any(t in k for t in TIMING)}
            for step, row in training_curve(run_dir).items()
        },
    }


def assert_same_end_state(resumed: dict, expected: dict) -> None:
    for key in ("step", "epoch", "lr", "schedule", "logged"):
        assert resumed[key] == expected[key], key
    for part in ("weights", "momentum"):
        assert resumed[part].keys() == expected[part].keys()
        for key in expected[part]:
            torch.testing.assert_close(resumed[part][key], expected[part][key], rtol=0, atol=0, msg=f"{part} {key}")


# The tests that compare with `straight` run on one xdist worker, so that it is trained once, not once a worker.
ON_STRAIGHTS_WORKER = pytest.mark.xdist_group("resume_straight")


@pytest.fixture(scope="session")  # not "module": xdist interleaves other modules, which would tear it down
def straight(tmp_path_factory, demo_root) -> dict:
    """The uninterrupted single-process run every resume below must end exactly equal to."""
    run_dir = tmp_path_factory.mktemp("straight")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore", "VGG_LIGHTNING_CACHE": str(run_dir)}
    run_cli(*RUN, f"data.root={demo_root}", f"hydra.run.dir={run_dir}", env=env, cwd=run_dir)
    state = end_state(run_dir)
    # the scenario: two lr cuts (end of epochs 1 and 2), then the plateau stop before epoch 3
    assert (state["step"], state["schedule"]["decreases"], state["schedule"]["last_epoch"]) == (12, 2, 3)
    assert state["lr"] == pytest.approx([1e-8] * len(state["lr"]), rel=1e-6)  # each param group (features, head)
    return state


def killed_then_resumed(run_dir, common, env, kill: list[str], group: bool = False):
    killed = run_cli(
        *common,
        f"hydra.run.dir={run_dir}",
        "+callbacks.kill._target_=kill_callback.KillAtStep",
        f"+callbacks.kill.group={group}",
        *kill,
        env=env,
        cwd=run_dir.parent,
        check=False,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not list((run_dir / "checkpoints").glob(".partial-*"))
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    run_cli(*common, f"hydra.run.dir={run_dir}", "ckpt_path=last", env=env, cwd=run_dir.parent)
    return saved["global_step"], end_state(run_dir)


@ON_STRAIGHTS_WORKER
def test_sigkill_mid_epoch_before_an_lr_cut_then_resume_ends_exactly_equal(cli_env, tmp_path, demo_root, straight):
    common = [*RUN, f"data.root={demo_root}"]
    saved_step, resumed = killed_then_resumed(
        tmp_path / "preempted", common, with_callbacks(cli_env), ["+callbacks.kill.step=7"]
    )
    assert saved_step == 6  # mid epoch 1, which ends with the first lr cut
    assert_same_end_state(resumed, straight)


@ON_STRAIGHTS_WORKER
def test_sigkill_in_the_first_epoch_resumes_from_its_step_checkpoint(cli_env, tmp_path, demo_root, straight):
    common = [*RUN, f"data.root={demo_root}"]
    saved_step, resumed = killed_then_resumed(
        tmp_path / "preempted", common, with_callbacks(cli_env), ["+callbacks.kill.step=4"]
    )
    assert saved_step == 3  # written before the first validation
    assert_same_end_state(resumed, straight)


@ON_STRAIGHTS_WORKER
def test_resume_from_slurms_hpc_checkpoint(cli_env, tmp_path, demo_root, straight):
    """Lightning's SIGUSR1 handler saves <default_root_dir>/hpc_ckpt_N.ckpt with trainer.save_checkpoint; the
    helper does the same at step 5 (newer than last.ckpt's step 3), then dies; ckpt_path=last takes it."""
    run_dir = tmp_path / "preempted"
    common = [*RUN, f"data.root={demo_root}"]
    kill = ["+callbacks.kill.step=5", f"+callbacks.kill.hpc_checkpoint={run_dir / 'hpc_ckpt_1.ckpt'}"]
    saved_step, resumed = killed_then_resumed(run_dir, common, with_callbacks(cli_env), kill)
    assert saved_step == 4  # last.ckpt, from the end of epoch 0: the hpc checkpoint (step 5) is the newer state
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert hpc["global_step"] == 5
    assert_same_end_state(resumed, straight)


def test_ddp_sigkill_mid_epoch_then_resume_ends_exactly_equal(cli_env, tmp_path, demo_root):
    env = with_callbacks(cli_env)
    common = [*RUN, f"data.root={demo_root}", *DDP]
    run_cli(*common, f"hydra.run.dir={tmp_path / 'straight'}", env=env, cwd=tmp_path)
    expected = end_state(tmp_path / "straight")
    assert (expected["step"], expected["schedule"]["decreases"]) == (12, 2)
    saved_step, resumed = killed_then_resumed(
        tmp_path / "preempted", common, env, ["+callbacks.kill.step=7"], group=True
    )
    assert saved_step == 6
    assert_same_end_state(resumed, expected)
    # each rank draws from its own stream, and each rank's own is what the checkpoint keeps
    ranks = torch.load(tmp_path / "preempted" / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (states,) = [v["ranks"] for k, v in ranks.items() if "RandomStateCheckpoint" in k]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])


def test_resume_with_no_checkpoint_starts_fresh_and_says_so(cli_env, tmp_path, demo_root):
    result = run_cli(
        "experiment=demo",
        f"data.root={demo_root}",
        *FAST,
        "ckpt_path=last",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=cli_env,
        cwd=tmp_path,
    )
    log = result.stdout + result.stderr
    assert "no checkpoint" in log and "starting fresh" in log
    # and nothing else picks one: Lightning's own "last" rule said so on every fresh run, wrongly
    assert "was called without a model" not in log and "Restoring states" not in log
    assert (tmp_path / "run" / "results.json").exists()


def test_atomic_save_keeps_the_old_checkpoint_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def broken_save(checkpoint, file):  # a write that dies half-way
        file.write(b"half a checkp")
        raise OSError("disk full")

    monkeypatch.setattr("vgg_lightning.checkpoints.write.torch.save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert list(tmp_path.iterdir()) == [path]


class WorseningNet(L.LightningModule):
    """A val error that rises every epoch: only the first epoch is ever the best."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/top1_error", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Gated(AtomicCheckpointIO):
    """Writes when `gate` is set, and says on which thread."""

    def __init__(self) -> None:
        self.gate, self.threads = threading.Event(), []

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.gate.wait(timeout=60)
        self.threads.append((Path(path).name, threading.current_thread() is threading.main_thread()))
        super().save_checkpoint(checkpoint, path, storage_options)


def test_last_ckpt_is_the_last_state_even_when_the_epoch_did_not_improve_and_saves_go_behind_training(tmp_path):
    checkpoint = PreemptibleCheckpoint(dirpath=tmp_path, monitor="val/top1_error", mode="min", save_last=True)
    data = torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=4)
    io = Gated()
    io.gate.set()
    trainer = L.Trainer(
        max_epochs=3, callbacks=[checkpoint], logger=False, enable_progress_bar=False, enable_model_summary=False,
        plugins=[BackgroundCheckpointIO(io)],
    )  # fmt: skip
    trainer.fit(WorseningNet(), data, data)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)  # on disk when fit returns
    assert (last["epoch"], last["global_step"]) == (2, 6)  # Lightning alone would leave epoch 0's state here
    assert Path(checkpoint.best_model_path).name.startswith("epoch=0")
    trainer.save_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")  # as Lightning's SLURM handler saves before a requeue
    assert io.threads[-1] == ("hpc_ckpt_1.ckpt", True) and (tmp_path / "hpc_ckpt_1.ckpt").is_file()
    assert io.threads[:-1] and not any(main for _, main in io.threads[:-1]), io.threads  # ModelCheckpoint's: behind


def test_a_background_save_writes_the_state_it_was_given_in_the_order_asked(tmp_path):
    inner = Gated()  # a slow disk: nothing is written until the gate opens
    io = BackgroundCheckpointIO(inner)
    older, last = tmp_path / "epoch=0.ckpt", tmp_path / "last.ckpt"
    older.write_bytes(b"an older best")
    weights = torch.zeros(3)
    with io.in_background():
        io.save_checkpoint({"w": weights}, last)  # returns with the write still to come
    io.remove_checkpoint(older)  # takes its turn behind the save
    weights.add_(1)  # training goes on
    assert not last.exists() and older.exists()
    inner.gate.set()
    io.save_checkpoint({"step": 2}, tmp_path / "hpc_ckpt_1.ckpt")  # not behind: after the queue, on disk at return
    assert [name for name, _ in inner.threads] == ["last.ckpt", "hpc_ckpt_1.ckpt"] and not older.exists()
    assert torch.equal(torch.load(last, weights_only=True)["w"], torch.zeros(3))  # the state when it was saved
    io.teardown()


# -- signals: a run stopped by one leaves its state at the step boundary, exits 128 + the signal, resumes exactly
def stopped_then_resumed(run_dir, common, env, signal_at: list[str], status: int):
    stopped = run_cli(*common, f"hydra.run.dir={run_dir}", "+callbacks.signal._target_=trust_callbacks.SignalAt",
                      *signal_at, env=env, cwd=run_dir.parent, check=False)  # fmt: skip
    assert stopped.returncode == status, stopped.stderr[-3000:]
    saved = run_dir / "checkpoints" / "last-interrupted.ckpt"
    step = torch.load(saved, map_location="cpu", weights_only=True)["global_step"]
    # the user's one line: what stopped the run, the step and the file kept, how to resume
    assert errors(stopped)[-1] == f"stopped by {signal.Signals(status - 128).name}: the state after step {step} is in " \
        f"{saved}; resume with ckpt_path=last", stopped.stderr[-3000:]  # fmt: skip
    assert not (run_dir / "results.json").exists()
    resumed = run_cli(*common, f"hydra.run.dir={run_dir}", "ckpt_path=last", env=env, cwd=run_dir.parent)
    assert f"resuming from {saved} (step {step}" in resumed.stdout + resumed.stderr
    assert not saved.exists()  # a fit that ended normally leaves no interrupted state behind
    return step, end_state(run_dir)


@ON_STRAIGHTS_WORKER
def test_ctrl_c_in_the_middle_of_a_step_stops_after_it_and_resumes_exactly(cli_env, tmp_path, demo_root, straight):
    """Between a step's backward and its update: Lightning's KeyboardInterrupt saved that half-done state (the
    step's dropout masks drawn, its batch consumed, its update not made)."""
    at = ["+callbacks.signal.signal=SIGINT", "+callbacks.signal.step=7"]
    step, resumed = stopped_then_resumed(
        tmp_path / "run", [*RUN, f"data.root={demo_root}"], with_callbacks(cli_env), at, 130
    )
    assert step == 7
    assert_same_end_state(resumed, straight)


@ON_STRAIGHTS_WORKER
def test_sigterm_during_validation_stops_at_the_next_step_exits_143_and_resumes_exactly(
    cli_env, tmp_path, demo_root, straight
):
    """What schedulers, `timeout`, `docker stop` and Kubernetes send: Lightning ended the run with exit status 0,
    no checkpoint and no results (a plan reading exit codes took it for done)."""
    at = ["+callbacks.signal.signal=SIGTERM", "+callbacks.signal.validation=1"]
    step, resumed = stopped_then_resumed(
        tmp_path / "run", [*RUN, f"data.root={demo_root}"], with_callbacks(cli_env), at, 143
    )
    assert step == 9  # epoch 1 ends at step 8; its validation finishes, step 9 is the next whole state
    assert_same_end_state(resumed, straight)


def test_a_signal_with_nothing_to_save_stops_the_run_at_once(cli_env, tmp_path, demo_root):
    """Before the first step (the Trainer's setup), after training (the final test), and a second Ctrl-C: exit
    128 + the signal at once, one line, the checkpoints already written kept. Three commands, one process."""
    common = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.max_steps=4", "trainer.limit_train_batches=4",
              "+callbacks.signal._target_=trust_callbacks.SignalAt"]  # fmt: skip
    runs = {"setup": ["+callbacks.signal.stage=setup"], "test": ["+callbacks.signal.stage=test"],
            "twice": ["+callbacks.signal.signal=SIGINT", "+callbacks.signal.step=2", "+callbacks.signal.twice=true"]}  # fmt: skip
    calls = [[*common, *args, f"hydra.run.dir={tmp_path / name}"] for name, args in runs.items()]
    setup, test, twice = run_cli_calls(*calls, env=with_callbacks(cli_env), cwd=tmp_path)
    assert (setup.returncode, test.returncode, twice.returncode) == (143, 143, 130)
    assert errors(setup)[-1] == "stopped by SIGTERM: no training step was under way (nothing to save)"
    assert not list((tmp_path / "setup").glob("checkpoints/*"))
    assert errors(test)[-1] == "stopped by SIGTERM: no training step was under way (nothing to save)"
    assert (tmp_path / "test" / "checkpoints" / "last.ckpt").is_file() and not (
        tmp_path / "test" / "results.json"
    ).exists()
    assert errors(twice)[-1].startswith("stopped by SIGINT: at once, without this step's state")
    assert not (tmp_path / "twice" / "checkpoints" / "last-interrupted.ckpt").exists()


def test_ddp_ranks_stop_at_the_same_step_when_only_rank_0_gets_the_signal(cli_env, tmp_path, demo_root):
    """`kill PID` reaches one process: the ranks agree on the step (else rank 0 would wait forever for the
    others in the save's collectives), each saves its own random state into the one checkpoint."""
    run_dir = tmp_path / "run"
    stopped = run_cli(*RUN, f"data.root={demo_root}", *DDP, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}",
                      "+callbacks.signal._target_=trust_callbacks.SignalAt", "+callbacks.signal.step=3",
                      "+callbacks.signal.rank=0", env=with_callbacks(cli_env), cwd=tmp_path, check=False)  # fmt: skip
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    saved = torch.load(run_dir / "checkpoints" / "last-interrupted.ckpt", map_location="cpu", weights_only=True)
    (states,) = [v["ranks"] for k, v in saved["callbacks"].items() if "RandomStateCheckpoint" in k]
    assert saved["global_step"] == 3 and len(states) == 2

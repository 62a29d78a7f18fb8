"""Preemption: a run killed with SIGKILL mid-epoch and resumed ends with the same weights as one that never
stopped; checkpoints are written atomically; resuming with no checkpoint yet starts fresh and says so."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import run_cli

from vgg_lightning.runtime.saving import AtomicCheckpointIO, PreemptibleCheckpoint

HELPERS = str(Path(__file__).parent / "helpers")

# 32 demo images, batch 8: 4 steps an epoch, 3 epochs; a checkpoint every 3 steps (3, 6, 9: mid-epoch).
RUN = [
    "experiment=demo",
    "model.width=0.0625",
    "data.batch_size=8",
    "data.num_workers=1",
    "trainer.max_epochs=3",
    "logger=csv",
    "callbacks.model_checkpoint.every_n_train_steps=3",
]


def weights(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return {"step": checkpoint["global_step"], **checkpoint["state_dict"]}


# Under DDP each of the 2 processes loads 4 images a step: the same 4 steps an epoch. Dropout stays on in
# both: every rank's RNG state is in the checkpoint.
DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu", "data.num_workers=0"]


@pytest.mark.parametrize("processes", [1, 2], ids=["single", "ddp"])
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(cli_env, tmp_path, demo_root, processes):
    env = {**cli_env, "PYTHONPATH": HELPERS}
    common = [*RUN, f"data.root={demo_root}", *(DDP if processes == 2 else [])]
    run_cli(*common, f"hydra.run.dir={tmp_path / 'straight'}", env=env, cwd=tmp_path)

    run_dir = tmp_path / "preempted"
    killed = run_cli(
        *common,
        f"hydra.run.dir={run_dir}",
        "+callbacks.kill._target_=kill_callback.KillAtStep",
        "+callbacks.kill.step=7",
        f"+callbacks.kill.group={processes > 1}",
        env=env,
        cwd=tmp_path,
        check=False,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL
    assert weights(run_dir)["step"] == 6  # the last checkpoint before the kill, mid-way through epoch 1
    assert not list((run_dir / "checkpoints").glob(".partial-*"))

    run_cli(*common, f"hydra.run.dir={run_dir}", "ckpt_path=last", env=env, cwd=tmp_path)
    expected, resumed = weights(tmp_path / "straight"), weights(run_dir)
    assert resumed["step"] == expected["step"] == 12
    for key in expected:
        if key != "step":
            torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=0, msg=key)


def test_resume_with_no_checkpoint_starts_fresh_and_says_so(cli_env, tmp_path, demo_root):
    from conftest import FAST

    result = run_cli(
        "experiment=demo",
        f"data.root={demo_root}",
        *FAST,
        "ckpt_path=last",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=cli_env,
        cwd=tmp_path,
    )
    assert "no checkpoint" in result.stdout + result.stderr and "starting fresh" in result.stdout + result.stderr
    assert (tmp_path / "run" / "results.json").exists()


def test_atomic_save_keeps_the_old_checkpoint_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def broken_save(checkpoint, filepath):  # a write that dies half-way
        Path(filepath).write_bytes(b"half a checkp")
        raise OSError("disk full")

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", broken_save)
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


def test_last_ckpt_is_the_last_state_even_when_the_epoch_did_not_improve(tmp_path):
    checkpoint = PreemptibleCheckpoint(dirpath=tmp_path, monitor="val/top1_error", mode="min", save_last=True)
    data = torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=4)
    trainer = L.Trainer(
        max_epochs=3, callbacks=[checkpoint], logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(WorseningNet(), data, data)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 6)  # Lightning alone would leave epoch 0's state here
    assert Path(checkpoint.best_model_path).name.startswith("epoch=0")

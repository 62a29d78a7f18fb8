"""`python -m vgg_lightning.reproduce`: the plan's order, its commands, resuming a stopped plan, a signal passed to
the run under way, a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import read_results, run_cli

from vgg_lightning import paper, reproduce, signals
from vgg_lightning.reproduce import command, plan

TABLE_3_ORDER = [
    "A_S256", "A-LRN_S256",                        # from random weights
    "B_S256", "C_S256", "D_S256", "E_S256",        # from A_S256
    "C_S384", "D_S384", "E_S384",                  # from S256 of the same config
    "C_jitter", "D_jitter", "E_jitter",            # from S384 of the same config
]  # fmt: skip


def names(rows) -> list[str]:
    return [paper.key(row) for row in rows]


def test_table3_runs_in_warm_start_order():
    assert names(plan("table3")) == [f"table3/{name}" for name in TABLE_3_ORDER]
    for row in plan("table3"):
        parents = paper.sources(row)
        for parent in parents:  # every parent runs before its children
            assert names(plan("table3")).index(paper.key(parent)) < names(plan("table3")).index(paper.key(row))


def test_a_few_rows_bring_what_they_need():
    assert names(plan("table3", ["D_jitter"])) == ["table3/A_S256", "table3/D_S256", "table3/D_S384", "table3/D_jitter"]
    table6 = names(plan("table6", ["DE_dense"]))
    assert table6[-1] == "table6/DE_dense" and {"table3/D_jitter", "table3/E_jitter"} < set(table6)
    assert names(plan("table5", ["E_multicrop"]))[-2:] == ["table3/E_jitter", "table5/E_multicrop"]
    with pytest.raises(SystemExit, match="no row F_S256 in table3"):
        plan("table3", ["F_S256"])


def test_commands_wire_each_row_to_its_parents_checkpoint():
    rows = {paper.key(row): row for row in plan("all")}
    assert command(rows["table3/A_S256"], "out", []) == [
        "python", "-m", "vgg_lightning", "experiment=table3/A_S256", "hydra.run.dir=out/table3/A_S256", "ckpt_path=last"
    ]  # fmt: skip
    assert command(rows["table3/D_jitter"], "out", ["trainer.devices=4"])[-2:] == [
        "model.init_from=out/table3/D_S384/checkpoints/last.ckpt",
        "trainer.devices=4",
    ]
    assert command(rows["table4/C_S384"], "out", [])[-1] == "ckpt_path=out/table3/C_S384/checkpoints/last.ckpt"
    assert (
        command(rows["table5/E_dense_multicrop"], "out", [])[-1]
        == "ckpt_path=out/table3/E_jitter/checkpoints/last.ckpt"
    )
    assert command(rows["table6/DE_multicrop"], "out", [])[-1] == (
        "eval.ensemble=[out/table3/D_jitter/checkpoints/last.ckpt,out/table3/E_jitter/checkpoints/last.ckpt]"
    )


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("a dry run ran something"))
    (tmp_path / "table3" / "A_S256").mkdir(parents=True)
    (tmp_path / "table3" / "A_S256" / "results.json").write_text("{}")
    assert reproduce.main(["table3", "--dry-run", "--out", str(tmp_path), "data.root=/data"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# table3: 12 runs in warm-start order")
    assert lines[1].startswith("# done: python -m vgg_lightning experiment=table3/A_S256 ")
    assert [line.split()[3 if line.startswith("python") else 5] for line in lines[1:]] == [
        f"experiment=table3/{name}" for name in TABLE_3_ORDER
    ]
    assert all(line.endswith("data.root=/data") for line in lines[1:])


class FakeRuns:
    """Stands in for the runs' processes (subprocess.Popen): writes the run's results.json, or fails at the row
    named `fail_at`, or, at the row named `terminated_at`, has the plan itself sent SIGTERM while it waits (as
    `timeout`, Kubernetes or `kill PID` would) and ends as a run that got it ends: status 143."""

    def __init__(self, fail_at: str | None = None, terminated_at: str | None = None) -> None:
        self.fail_at, self.terminated_at, self.ran, self.signals = fail_at, terminated_at, [], []

    def __call__(self, cmd, **kwargs):
        assert kwargs.get("start_new_session"), "a run in the plan's session would get a terminal's Ctrl-C twice"
        self.experiment = next(a.split("=", 1)[1] for a in cmd if a.startswith("experiment="))
        self.ran.append(self.experiment)
        if self.experiment not in (self.fail_at, self.terminated_at):
            run_dir = Path(next(a.split("=", 1)[1] for a in cmd if a.startswith("hydra.run.dir=")))
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "results.json").write_text("{}")
        return self

    def wait(self) -> int:
        if self.experiment == self.terminated_at:
            os.kill(os.getpid(), signal.SIGTERM)
            return 143 if self.signals == [signal.SIGTERM] else 0
        return 1 if self.experiment == self.fail_at else 0

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


def test_a_stopped_plan_resumes_where_it_stopped(tmp_path, monkeypatch):
    stopped = FakeRuns(fail_at="table3/C_S256")
    monkeypatch.setattr(subprocess, "Popen", stopped)
    assert reproduce.main(["table3", "--out", str(tmp_path)]) == 1
    assert stopped.ran == ["table3/A_S256", "table3/A-LRN_S256", "table3/B_S256", "table3/C_S256"]

    resumed = FakeRuns()
    monkeypatch.setattr(subprocess, "Popen", resumed)
    assert reproduce.main(["table3", "--out", str(tmp_path)]) == 0
    assert resumed.ran == [f"table3/{name}" for name in TABLE_3_ORDER[3:]]  # from the row that failed on


def test_a_plan_sent_sigterm_passes_it_to_its_run_and_ends_with_the_runs_status(tmp_path, monkeypatch):
    """Before, the plan died alone (the run it had started went on training, orphaned)."""
    terminated = FakeRuns(terminated_at="table3/A-LRN_S256")
    monkeypatch.setattr(subprocess, "Popen", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    assert reproduce.main(["table3", "--out", str(tmp_path)]) == 143  # not done: a scheduler runs it again
    assert terminated.ran == ["table3/A_S256", "table3/A-LRN_S256"] and terminated.signals == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == handler
    assert signals.exit_status(-signal.SIGKILL) == 137


def test_reproduce_on_demo_data_end_to_end(tmp_path, demo_root, cli_env):
    """Table 4's B_S256 needs A_S256 (trained), B_S256 (warm-started from it) and the multi-scale test."""
    out = tmp_path / "paper"
    overrides = [
        "data=demo", f"data.root={demo_root}", "data.batch_size=8", "data.num_workers=0", "model.width=0.0625",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0", "++trainer.limit_test_batches=3", "logger=csv",
    ]  # fmt: skip
    args = ["table4", "--rows", "B_S256", "--out", str(out), *overrides]
    result = run_cli(*args, env=cli_env, cwd=tmp_path, module="vgg_lightning.reproduce")
    assert result.stdout.count("python -m vgg_lightning") == 3

    a, b, tested = (read_results(out / name) for name in ("table3/A_S256", "table3/B_S256", "table4/B_S256"))
    assert (a["config"], a["experiment"], a["protocol"], a["test_scales"]) == ("A", "table3/A_S256", "dense", [256])
    assert a["paper"] is None  # run on the demo set: its figures are not set against ImageNet's (issue 16)
    assert (b["config"], b["train_scale"]) == ("B", 256)
    log = next((out / "table3" / "B_S256").glob("*.log")).read_text()
    assert "warm start of B from" in log and "conv3_2 <- conv3_2, fc6 <- fc6" in log
    assert (tested["task"], tested["config"], tested["protocol"]) == ("eval", "B", "dense")
    assert tested["test_scales"] == [224, 256, 288] and tested["train_scale"] == 256
    assert tested["weights"] == [str(out / "table3" / "B_S256" / "checkpoints" / "last.ckpt")]

    again = run_cli(*args, env=cli_env, cwd=tmp_path, module="vgg_lightning.reproduce")
    assert again.stdout.count("# done: ") == 3 and "python -m" not in again.stdout
    assert json.loads((out / "table4" / "B_S256" / "results.json").read_text()) == tested

"""A run dir belongs to one run (issue 16): a fresh run over a finished one is refused (or its files moved aside),
`ckpt_path=last` resumes the newest state, a refused job leaves the dir as it was, and a live run's lock refuses
another while a dead one's is taken over."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

from helpers import STEPS, assert_one_line_error, read_results, run_cli


# -- 1, 8, 11, 12: a run dir holds one run; ckpt_path=last is its newest state; honest, quiet runs ---------
def test_run_dir_refuses_a_fresh_run_and_resumes_its_newest_state(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / "D"
    common = ["experiment=table3/A_S256", "data=demo", f"data.root={demo_root}", *STEPS]
    first = run_cli(*common, "trainer.max_steps=2", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path)
    log = first.stdout + first.stderr + (run_dir / "__main__.log").read_text()  # the console and the log file
    # 12: each log line once (in the file: the console leaves Lightning's seed line out), no advertising, no
    # monitor warning before the first validation
    assert log.count("Seed set to 0") == 1 and "💡" not in log and "could not find the monitored key" not in log
    # 11: a Table 3 experiment on the demo data is not set against the paper's ImageNet row
    assert read_results(run_dir)["paper"] is None
    config, results = (run_dir / ".hydra" / "config.yaml").read_bytes(), (run_dir / "results.json").read_bytes()

    # 1: a fresh run into the dir is refused before any work, saying how to resume or where else to go
    fresh = run_cli(*common, "trainer.max_steps=3", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(fresh, "ckpt_path=last", "move_aside=true")
    # 8: a refused resume (another net) leaves the dir describing its checkpoint
    other = run_cli(*common, "ckpt_path=last", "model.width=0.125", f"hydra.run.dir={run_dir}", env=cli_env,
                    cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(other, "holds another net")
    assert (run_dir / ".hydra" / "config.yaml").read_bytes() == config
    assert (run_dir / "results.json").read_bytes() == results
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*")) == ["last.ckpt"]

    # a copy of the dir resumes into its own last.ckpt (never last-v1.ckpt), mid-epoch without a false warning
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    resumed = run_cli(*common, "ckpt_path=last", "trainer.max_steps=3", f"hydra.run.dir={copy}", env=cli_env,
                      cwd=tmp_path)  # fmt: skip
    assert "not resumable" not in resumed.stdout + resumed.stderr
    assert sorted(p.name for p in (copy / "checkpoints").glob("last*")) == ["last.ckpt"]
    # newest by the step recorded inside, not by mtime: an older state copied in later is not "last"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", copy / "hpc_ckpt_1.ckpt")
    again = run_cli(*common, "ckpt_path=last", "trainer.max_steps=4", f"hydra.run.dir={copy}", env=cli_env,
                    cwd=tmp_path)  # fmt: skip
    assert f"resuming from {copy / 'checkpoints' / 'last.ckpt'} (step 3, " in again.stdout + again.stderr
    assert "not resumable" not in again.stdout + again.stderr  # step 3 of 2-step epochs: a mid-epoch resume
    assert read_results(copy)["steps"] == 4

    # the documented switch moves the old run aside, deleting nothing
    moved = run_cli(*common, "trainer.max_steps=1", "move_aside=true", f"hydra.run.dir={run_dir}", env=cli_env,
                    cwd=tmp_path)  # fmt: skip
    previous = [p for p in run_dir.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1 and (previous[0] / "results.json").read_bytes() == results, moved.stderr[-2000:]
    assert (previous[0] / ".hydra" / "config.yaml").read_bytes() == config
    assert read_results(run_dir)["steps"] == 1


# -- 2: one run per dir ----------------------------------------------------------------------------------
def test_a_run_dir_held_by_a_live_run_is_refused_and_a_dead_ones_lock_is_stale(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / "D"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": 0, "launch": None}
        (run_dir / ".lock").write_text(json.dumps(lock))
        args = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.max_steps=1", f"hydra.run.dir={run_dir}"]
        refused = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
        assert_one_line_error(refused, "in use by another run", f"pid {holder.pid}")
        assert not (run_dir / ".hydra").exists()  # refused before Hydra wrote anything
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock is stale, taken over (here by a run then refused for a bad value), released
    taken = run_cli(*args, "model.width=0", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(taken, "model.width=0")
    assert "stale lock" in taken.stdout + taken.stderr and not (run_dir / ".lock").exists()

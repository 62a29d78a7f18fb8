"""A run dir belongs to one run (issue 16): a fresh run over a finished one is refused (or its files moved aside),
`ckpt_path=last` resumes the newest state, a refused job leaves the dir as it was, and a live run's lock refuses
another while a dead one's is taken over. Issue 29: the lock is never taken while its owner writes it, no task
replaces a finished run's files, and a dir the file system refuses (a name too long, read-only, full) or a
`last.ckpt` cut short is said in one line, with nothing written lost."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
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
    assert "exists and is not empty" not in resumed.stderr  # Lightning's warning of its own dir: said nothing
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


# -- issue 29: a lock taken whole, one run of any task per dir, a dir the file system refuses ------------
SLOW_OWNER = """
import json, sys, time
from vgg_lightning.app import run_dir

class SlowJson:  # the owner's write of its name into the lock file takes a minute
    loads = staticmethod(json.loads)
    dump = staticmethod(lambda *a, **k: (time.sleep(60), json.dump(*a, **k)))
    dumps = staticmethod(lambda *a, **k: (time.sleep(60), json.dumps(*a, **k))[1])

run_dir.json = SlowJson
print("locking", flush=True)
run_dir.RunDirLock(sys.argv[1]).acquire()
"""


def test_a_lock_whose_owner_is_still_writing_it_is_in_use(cli_env, tmp_path, demo_root):
    """The lock file exists, still empty, while its owner writes: another run must not take it for stale."""
    run_dir = tmp_path / "D"
    owner = subprocess.Popen([sys.executable, "-c", SLOW_OWNER, str(run_dir)], env=cli_env, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        assert owner.stdout.readline() == "locking\n"
        for _ in range(300):
            if (run_dir / ".lock").exists():
                break
            time.sleep(0.1)
        # model.width=0: a run that took the lock anyway is refused right after, for that
        args = ["experiment=demo", f"data.root={demo_root}", *STEPS, "model.width=0", f"hydra.run.dir={run_dir}"]
        refused = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
        assert_one_line_error(refused, "in use by another run", "starting up")
        assert (run_dir / ".lock").exists() and not (run_dir / ".hydra").exists()
    finally:
        owner.kill()
        owner.wait()


def test_predict_never_replaces_a_finished_runs_files(cli_env, tmp_path, demo_run, demo_root):
    run_dir = tmp_path / "P"
    run_dir.mkdir()
    earlier = run_dir / "predictions.csv"
    earlier.write_text("path,class,probability\nmine.jpg,cat,0.9\n")
    args = ["task=predict", f"ckpt_path={demo_run / 'checkpoints' / 'last.ckpt'}", f"inputs={demo_root}/val",
            "data.num_workers=0", "logger=none", "print_config=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    refused = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(refused, "already holds a run (predictions.csv)", "move_aside=true")
    assert earlier.read_text() == "path,class,probability\nmine.jpg,cat,0.9\n"


def test_a_run_dir_name_over_the_file_systems_limit_is_one_line(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / ("x" * 300) / "run"
    result = run_cli("experiment=demo", f"data.root={demo_root}", *STEPS, f"hydra.run.dir={run_dir}", env=cli_env,
                     cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(result, f"hydra.run.dir={run_dir}", "is 300 bytes, over its file system's limit of 255")


def unshare_mounts() -> bool:
    """Whether this user may mount a tmpfs in a namespace of its own (root may; others where the kernel lets
    unprivileged users have namespaces)."""
    try:
        probe = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tempfile.gettempdir()}"]
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cli_on_a_tmpfs(mount: Path, options: str, args: list[str], env: dict, before: str = "", after: str = ""):
    """`python -m vgg_lightning ARGS` with a tmpfs of `options` mounted at `mount` (seen by it alone): the
    full or read-only disk the run dir is on. `before` and `after` are shell lines run around it there."""
    mount.mkdir()
    script = f'mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && {before or "true"} && "$@"; '
    script += f"status=$?; {after or 'true'}; exit $status"
    command = ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "vgg_lightning", *args]
    return subprocess.run(command, env=env, cwd=mount.parent, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not unshare_mounts(), reason="needs a tmpfs of its own (unshare -rm: root, or user namespaces)")
def test_a_read_only_or_full_run_dir_is_one_line_and_keeps_what_was_written(cli_env, tmp_path, fast_run, demo_root):
    common = ["experiment=demo", f"data.root={demo_root}", *STEPS]
    read_only = cli_on_a_tmpfs(tmp_path / "ro", "ro", [*common, f"hydra.run.dir={tmp_path / 'ro' / 'run'}"], cli_env)
    assert_one_line_error(read_only, f"hydra.run.dir={tmp_path / 'ro' / 'run'}", "read-only")

    # a resume whose next save finds the disk full: the save fails whole, last.ckpt stays the state it held
    last = fast_run / "checkpoints" / "last.ckpt"  # the narrow net of `common`, two steps trained
    mount, kept = tmp_path / "full", tmp_path / "kept"
    folder = shlex.quote(str(mount / "run" / "checkpoints"))
    size = f"size={last.stat().st_size + 1_000_000}"  # last.ckpt and the run's small files fit, a second save not
    args = [*common, "trainer.max_steps=4", "ckpt_path=last", f"hydra.run.dir={mount / 'run'}"]
    put_last = f"mkdir -p {folder} && cp {shlex.quote(str(last))} {folder}"
    full = cli_on_a_tmpfs(mount, size, args, cli_env, before=put_last, after=f"cp -r {folder} {shlex.quote(str(kept))}")
    # the save fails, or a log written while the save fills the disk: either way one line naming the file
    assert_one_line_error(full, f"{mount / 'run'}/", "no space left on its device")
    assert [p.name for p in kept.iterdir()] == ["last.ckpt"]  # no half-written file beside it
    assert (kept / "last.ckpt").read_bytes() == last.read_bytes()


def test_a_state_past_max_epochs_is_refused_in_one_line(cli_env, tmp_path, demo_run, demo_root):
    """The demo's last.ckpt holds epoch 7: resumed with trainer.max_epochs=6, Lightning would stop with a
    traceback; the run says it in one line, naming the key and what would do."""
    ckpt = demo_run / "checkpoints" / "last.ckpt"
    result = run_cli("experiment=demo", f"data.root={demo_root}", "trainer.max_epochs=6", f"ckpt_path={ckpt}",
                     f"hydra.run.dir={tmp_path / 'run'}", env=cli_env, cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(result, f"{ckpt} holds the state of epoch 7 (step 192), past trainer.max_epochs=6",
                          "trainer.max_epochs=8 or more")  # fmt: skip


def test_a_truncated_last_ckpt_is_refused_not_started_afresh_over(cli_env, tmp_path, demo_run, demo_root):
    run_dir = tmp_path / "T"
    (run_dir / "checkpoints").mkdir(parents=True)
    whole = (demo_run / "checkpoints" / "last.ckpt").read_bytes()
    cut = run_dir / "checkpoints" / "last.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])  # a copy that stopped half-way
    args = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.max_steps=4", "ckpt_path=last"]
    result = run_cli(*args, f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(result, "ckpt_path=last: checkpoints/last.ckpt", "cannot be read", "ckpt_path=<checkpoint>",
                          "(last.ckpt: damaged or truncated")  # fmt: skip
    assert cut.read_bytes() == whole[: len(whole) // 2] and not (run_dir / "results.json").exists()

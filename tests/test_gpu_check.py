"""benchmarks/gpu_check.py --dry-run: every step of the GPU check at toy sizes on the CPU, so that the one call
a GPU machine makes has run before it gets there; and what keeps the GPU machine's reservation safe: a small
report folder, a budget kept, a step that overruns killed with its process group and its figures kept."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO

CHECK = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")]
RETURNED = {"gpu_check.json", "gpu_check.md", "train_vgg16.log"}  # all that comes back from a GPU machine


def test_gpu_check_dry_run_runs_every_step_and_returns_a_small_folder(tmp_path, cli_env):
    out = tmp_path / "check"
    result = subprocess.run([*CHECK, "--out", str(out), "--dry-run"], cwd=tmp_path, env=cli_env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    failed = {name: step.get("log_tail") for name, step in report["steps"].items() if step["status"] != "ok"}
    assert result.returncode == 0 and not failed, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert list(report["steps"]) == ["install", "train_vgg16", "loader", "syncs", "gpu_tests", "dense_eval",
                                     "lightning_overhead", "demo_cli"]  # fmt: skip
    files = {path.name: path.stat().st_size for path in out.iterdir()}
    assert set(files) == RETURNED and sum(files.values()) < 64 * 1024, files
    steps = {name: step["result"] for name, step in report["steps"].items()}
    train = steps["train_vgg16"]
    assert {"eager_images_per_s", "compile_s", "compiled_images_per_s", "fed_cpu_images_per_s",
            "fed_device_images_per_s"} <= set(train)  # fmt: skip
    assert {"cpu_images_per_s", "device_images_per_s"} <= set(steps["loader"])
    assert steps["syncs"]["host_syncs"]["max_between_logging"] == 0
    assert report["elapsed_s"] <= report["budget_s"] == 420
    table = (out / "gpu_check.md").read_text()
    for row in ("| train VGG-16 |", "| data pipeline |", "| dense eval bucketing |", "| lightning overhead |",
                "| syncs per training step |"):  # fmt: skip
        assert row in table
    assert "MFU" in table.split("| train VGG-16 |")[1].splitlines()[0]


def test_a_step_that_overruns_is_killed_whole_its_figures_kept_and_the_budget_skips_what_no_longer_fits(
    tmp_path, cli_env
):
    """The install step hangs after its first figure with a worker of its own (as a loader's or a compiler's):
    the JSON holds the figure while the step still runs; at its limit the step's process group is killed, worker
    included; what is left of the budget is less than the next step's limit, so that step is skipped."""
    out = tmp_path / "check"
    command = [*CHECK, "--out", str(out), "--dry-run", "--steps", "install,train_vgg16", "--budget", "5",
               "--limit", "install=2", "--hang", "install"]  # fmt: skip
    check = subprocess.Popen(command, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen_running, deadline = None, time.monotonic() + 60
    while check.poll() is None and seen_running is None and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            install = json.loads((out / "gpu_check.json").read_text())["steps"].get("install", {})
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if install.get("status") == "running" and "kept" in install.get("result", {}):
            seen_running = install
    output = check.communicate(timeout=60)[0].decode()
    assert seen_running, output[-3000:]  # the figure was in the JSON while the step ran
    report = json.loads((out / "gpu_check.json").read_text())
    install, train = report["steps"]["install"], report["steps"]["train_vgg16"]
    assert check.returncode == 1 and install["status"] == "timed out", output[-3000:]
    assert "kept" in install["result"]  # the figures measured before the kill
    worker = Path(f"/proc/{install['result']['hang_pid']}/status")
    assert not worker.exists() or "zombie" in worker.read_text()  # killed with the step's group
    assert train["status"] == "skipped" and "budget" in train["note"]
    assert {path.name for path in out.iterdir()} <= RETURNED

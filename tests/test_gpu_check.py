"""benchmarks/gpu_check.py --dry-run: every step of the GPU check at toy sizes on the CPU, so that the one call
a GPU machine makes has run before it gets there."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO


def test_gpu_check_dry_run_runs_every_step_and_writes_the_report(tmp_path, cli_env):
    out = tmp_path / "check"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(out), "--dry-run"],
        cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    failed = {name: step.get("error") for name, step in report["steps"].items() if step["status"] != "ok"}
    assert result.returncode == 0 and not failed, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert list(report["steps"]) == ["install", "gpu_tests", "jpegs", "train_vgg16", "dense_eval",
                                     "lightning_overhead", "demo_cli", "syncs"]  # fmt: skip
    steps = {name: step["result"] for name, step in report["steps"].items()}
    assert set(steps["train_vgg16"]["real"]) == {"cpu", "device"}  # both loader paths fed the net
    assert steps["syncs"]["host_reads"]["max_between_logging"] == 0
    table = (out / "gpu_check.md").read_text()
    for row in ("| train VGG-16 (CPU) |", "| dense eval bucketing |", "| lightning overhead |"):
        assert row in table

"""On a real single-node SLURM (the `slurm` fixture; skipped without the binaries): a depth sweep through
hydra/launcher=slurm whose results the report reads; a job preempted with SLURM's time-limit signal, requeued
and resumed, under submitit and under plain sbatch, each ending with the weights of a run never stopped; a job
signalled during start-up, requeued (SIGUSR1) or ended with status 143 (SIGTERM); two srun tasks forming one DDP
run in one run dir. CPU, toy sizes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, read_results, run_cli, with_callbacks

pytestmark = pytest.mark.xdist_group("slurm")  # one xdist worker runs them all, on its one cluster

TOY = ["experiment=demo", "model.width=0.0625", "data.batch_size=8", "logger=csv", "trainer.accelerator=cpu"]
# 32 demo images, batch 8: 4 steps an epoch, 3 epochs; a step checkpoint every 3 steps. One loader worker,
# which receives SLURM's signals as the training process does.
PREEMPTED = [*TOY, "data.num_workers=1", "trainer.max_epochs=3", "callbacks.model_checkpoint.every_n_train_steps=3"]
PAUSE_AT = 7  # the first attempt is held (and preempted) after step 7: last.ckpt holds step 6


def slurm_env(cli_env: dict, slurm) -> dict:
    env = with_callbacks({**cli_env, **slurm.env})
    env["VIRTUAL_ENV"] = sys.prefix  # the example script activates .venv unless one is active
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def pause(marker: Path) -> list[str]:
    return [
        "+callbacks.pause._target_=pause_callback.PauseAtStep",
        f"+callbacks.pause.step={PAUSE_AT}",
        f"+callbacks.pause.marker={marker}",
    ]


def last_weights(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {"step": checkpoint["global_step"], **checkpoint["state_dict"]}


def assert_same_weights(run_dir: Path, straight: Path) -> None:
    resumed, expected = last_weights(run_dir), last_weights(straight)
    assert resumed["step"] == expected["step"] == 12
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=0, msg=key)


def wait_for(condition, what: str, slurm, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{slurm.run('squeue', check=False).stdout}\n{slurm.logs()}")


def job_info(slurm, job_id: str) -> dict:
    text = slurm.run("scontrol", "show", "job", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


@pytest.fixture(scope="session")  # not "module": xdist interleaves other modules, which would tear it down
def straight(tmp_path_factory, demo_root) -> Path:
    """The same training, never stopped, run outside SLURM."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    run_cli(*PREEMPTED, f"data.root={demo_root}", f"hydra.run.dir={run_dir}", env=env, cwd=run_dir.parent)
    return run_dir


def test_launcher_resources_follow_the_workers_and_ask_for_gpus_only_when_the_run_does():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from vgg_lightning.app.config_files import primary_config_dir, register_groups
    from vgg_lightning.app.resolvers import register_resolvers

    register_resolvers()
    register_groups()

    def launcher(*overrides: str) -> dict:
        with initialize_config_dir(primary_config_dir(), version_base="1.3"):
            cfg = compose("config", ["hydra/launcher=slurm", *overrides], return_hydra_config=True)
        keys = ("cpus_per_task", "gpus_per_node", "tasks_per_node")
        return {key: OmegaConf.select(cfg, f"hydra.launcher.{key}") for key in keys}

    assert launcher("data.num_workers=0", "trainer.accelerator=cpu") == {
        "cpus_per_task": 1,
        "gpus_per_node": None,
        "tasks_per_node": 1,
    }
    assert launcher("data.num_workers=8", "trainer.devices=4") == {
        "cpus_per_task": 9,
        "gpus_per_node": 4,
        "tasks_per_node": 4,
    }


STOP_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP")  # a terminal's Ctrl-C reaches the workers too


class _HandlerOfUSR1(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        return {name: str(signal.getsignal(getattr(signal, name))) for name in STOP_SIGNALS}


def test_loader_workers_ignore_the_preemption_signals_the_training_process_handles(demo_root):
    from vgg_lightning.data.datamodule import loader_worker_init

    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # as Lightning's auto-requeue handler
    try:
        loader = torch.utils.data.DataLoader(
            _HandlerOfUSR1(), num_workers=1, worker_init_fn=loader_worker_init, collate_fn=lambda b: b[0]
        )
        assert next(iter(loader)) == {name: str(signal.SIG_IGN) for name in STOP_SIGNALS}
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_one_owner_of_the_time_limit_signal():
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from vgg_lightning.app.launch import cluster_plugins

    (environment,) = cluster_plugins({"SUBMITIT_EXECUTOR": "slurm"})  # submitit's USR2: Lightning stands aside
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    assert cluster_plugins({"SLURM_JOB_ID": "7"}) == []  # plain sbatch: Lightning's own SIGUSR1 auto-requeue


def test_depth_sweep_through_submitit_whose_results_the_report_reads(slurm, cli_env, tmp_path, demo_root):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m", "hydra/launcher=slurm", *TOY, "model=A,B", f"data.root={demo_root}", "data.num_workers=0",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
        "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
        env=slurm_env(cli_env, slurm), cwd=tmp_path,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert [read_results(sweep / job)["config"] for job in ("0", "1")] == ["A", "B"]
    assert len(re.findall(r"#\d .*: completed: top-1 error", log)) == 2, log[-3000:]
    report = run_cli(
        str(sweep), "--out", str(tmp_path / "report"), module="vgg_lightning.report", env=cli_env, cwd=tmp_path
    )
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ") and "demo" in line]
    assert [row.split("|")[3].strip() for row in rows] == ["A", "B"], report.stdout


def test_submitit_job_preempted_is_requeued_once_and_resumes_to_the_same_weights(
    slurm, cli_env, tmp_path, demo_root, straight
):
    sweep, marker = tmp_path / "sweep", tmp_path / "paused"
    submitter = subprocess.Popen(
        [
            sys.executable, "-m", "vgg_lightning", "-m", "hydra/launcher=slurm", *PREEMPTED, f"data.root={demo_root}",
            "ckpt_path=last", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", *pause(marker),
        ],
        env=slurm_env(cli_env, slurm), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        job_id, step = wait_for(lambda: marker.exists() and marker.read_text().split(), "step 7", slurm)
        assert int(step) == PAUSE_AT and last_weights(sweep / "0")["step"] == 6
        # what SLURM sends at submitit's signal_delay_s before the time limit, to every process of the step
        slurm.run("scancel", "--signal=USR2", job_id)
        log, _ = submitter.communicate(timeout=300)
    finally:
        submitter.kill()
    assert submitter.returncode == 0, log[-4000:]
    assert re.search(r"#0 .*: completed after 1 requeue\(s\): top-1 error", log), log[-3000:]
    job_log = next((sweep / ".submitit").glob("*/*_log.out")).read_text()
    # caught by the training process only, not by its loader worker (each line is logged twice: two handlers)
    assert len(re.findall(r"^submitit WARNING .* Caught signal SIGUSR2", job_log, re.M)) == 1, job_log
    assert job_info(slurm, job_id)["Restarts"] == "1"
    assert not list((sweep / "0").glob("hpc_ckpt_*"))  # Lightning's auto-requeue stays off under submitit
    assert_same_weights(sweep / "0", straight)


def sbatch(slurm, cli_env, tmp_path, *overrides: str) -> tuple[str, Path]:
    """The README's sbatch pattern (examples/train_slurm.sbatch) on one node, one task: its job id and output."""
    out = tmp_path / "slurm.out"
    submitted = subprocess.run(
        ["sbatch", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10",
         f"--output={out}", str(REPO / "examples" / "train_slurm.sbatch"), *overrides,
         "trainer.devices=1", "trainer.num_nodes=1"],
        env=slurm_env(cli_env, slurm), cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return submitted.stdout.split()[-1], out


def ended(slurm, job_id: str) -> dict:
    return wait_for(
        lambda: (i := job_info(slurm, job_id))["JobState"] in ("COMPLETED", "FAILED", "CANCELLED") and i,
        "the job to end",
        slurm,
    )


def test_sbatch_job_preempted_is_requeued_once_and_resumes_from_the_state_at_the_signal(
    slurm, cli_env, tmp_path, demo_root, straight
):
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    job_id, out = sbatch(slurm, cli_env, tmp_path, *PREEMPTED, f"data.root={demo_root}", f"hydra.run.dir={run_dir}",
                         *pause(marker))  # fmt: skip
    wait_for(lambda: marker.exists(), "step 7", slurm)
    # what SLURM sends at --signal=SIGUSR1@120 before the time limit, to every process of the step
    slurm.run("scancel", "--signal=USR1", job_id)
    info = ended(slurm, job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", out.read_text(errors="replace")[-4000:]
    log = (run_dir / "__main__.log").read_text()  # Hydra's job log, both attempts
    # acted on once, by the training process (its loader worker ignored it), at the step boundary
    assert len(re.findall(r"^\[.*\] - SIGUSR1: stopping after this step", log, re.M)) == 1, log
    saved = run_dir / "checkpoints" / "last-interrupted.ckpt"
    said = f"stopped by SIGUSR1: the state after step {PAUSE_AT} is in {saved}; resume with ckpt_path=last; " \
        f"requeued SLURM job {job_id}"  # fmt: skip
    assert said in out.read_text(errors="replace")
    # the requeued job restored that state, and the fit that ended removed it
    assert f"ckpt_path=last: resuming from {saved} (step {PAUSE_AT}" in log and not saved.exists()
    assert not [p.name for p in run_dir.iterdir() if "hpc_ckpt" in p.name]  # Lightning's own handler stayed out
    assert_same_weights(run_dir, straight)


def signal_handlers_installed(job_id: str, signum: int) -> bool:
    """Whether the job's `python -m vgg_lightning` process catches `signum` (/proc's SigCgt mask): our handlers
    are in place, and the imports that take seconds have only begun."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            argv = (status.parent / "cmdline").read_bytes().split(b"\0")
            environ = (status.parent / "environ").read_bytes().split(b"\0")
            caught = int(re.search(r"^SigCgt:\s*(\w+)", status.read_text(), re.M).group(1), 16)
        except (OSError, AttributeError):
            continue
        if argv[1:3] == [b"-m", b"vgg_lightning"] and f"SLURM_JOB_ID={job_id}".encode() in environ:
            return bool(caught >> (signum - 1) & 1)
    return False


def test_a_preemption_during_start_up_requeues_the_job_and_a_sigterm_ends_it_with_143(
    slurm, cli_env, tmp_path, demo_root
):
    """A job with a short time limit on a busy machine gets SLURM's signal before training has begun: during the
    imports (attempt 1: SIGUSR1, the time-limit signal, requeues it: nothing to save yet), then during the
    Trainer's setup (attempt 2: SIGTERM, a cancellation, ends it with status 143). Before, SIGUSR1 killed the
    job outright ("task 0: User defined signal 1"), never requeued."""
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    hold_in_setup = ["+callbacks.pause._target_=pause_callback.PauseAtStep", "+callbacks.pause.step=0",
                     f"+callbacks.pause.marker={marker}", "+callbacks.pause.attempt=1"]  # fmt: skip
    job_id, out = sbatch(slurm, cli_env, tmp_path, *TOY, f"data.root={demo_root}", "data.num_workers=0",
                         f"hydra.run.dir={run_dir}", *hold_in_setup)  # fmt: skip
    wait_for(lambda: signal_handlers_installed(job_id, signal.SIGUSR1), "the job's python to start", slurm, timeout=120)
    slurm.run("scancel", "--signal=USR1", job_id)  # during the imports
    wait_for(lambda: marker.exists(), "the requeued job's setup", slurm)
    slurm.run("scancel", "--signal=TERM", job_id)  # during the Trainer's setup
    info = ended(slurm, job_id)
    said = out.read_text(errors="replace")
    assert (info["JobState"], info["Restarts"], info["ExitCode"]) == ("FAILED", "1", "143:0"), said[-4000:]
    nothing = "no training step was under way (nothing to save)"
    assert f"stopped by SIGUSR1: {nothing}; requeued SLURM job {job_id}" in said
    assert f"stopped by SIGTERM: {nothing}" in said and "Traceback" not in said
    assert not list(run_dir.glob("checkpoints/*"))


def test_two_srun_tasks_form_one_ddp_run_in_one_run_dir(slurm, cli_env, tmp_path, demo_root):
    result = subprocess.run(
        ["srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--kill-on-bad-exit=1", sys.executable, "-m", "vgg_lightning",
         *TOY, f"data.root={demo_root}", "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=2", "trainer.devices=2", "trainer.strategy=ddp"],
        env=slurm_env(cli_env, slurm), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log  # Lightning took both ranks from SLURM
    runs = list((tmp_path / "outputs" / "train").iterdir())
    assert [p.name.startswith("slurm-") for p in runs] == [True], runs
    assert read_results(runs[0])["steps"] == 2
    assert (runs[0] / ".hydra").is_dir() and (runs[0] / "checkpoints" / "last.ckpt").is_file()

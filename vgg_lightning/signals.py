"""The process's signals, owned from its first instant: `cli()` installs these handlers before it imports
anything heavy, and they stay until the process ends (Lightning's own are kept out of the way).

- SIGTERM (schedulers, `timeout`, `docker stop`, Kubernetes), SIGINT (Ctrl-C), SIGHUP (the terminal went away);
  and SIGUSR1 in a SLURM job that SLURM started directly (`sbatch` + `srun`, the README's pattern: its time-limit
  signal, `--signal=SIGUSR1@N`; under submitit, USR2 is submitit's).
- Before training has begun (imports, the data scan, the net, the sanity check) and after it ended (the final
  test): there is nothing to save, so the process stops at once.
- While training: the signal is noted, and the training loop stops at the next step boundary, where the state
  is whole (`checkpoints.interrupt.InterruptCheckpoint` writes `last-interrupted.ckpt` there). A second Ctrl-C stops
  at once (the checkpoints already written stay).
- Either way the process exits 128 + the signal's number (143 for SIGTERM, 130 for Ctrl-C), as a process killed
  by it would, so that a plan or a scheduler reading exit codes knows the run is not done; SIGUSR1 first asks SLURM
  to requeue the job (`scontrol requeue`, what Lightning's auto-requeue does), which then resumes with
  ckpt_path=last.

Torch-free, Hydra-free, and importing nothing of ours: it is imported first."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # set by Lightning, torchrun, srun


class Stopped(SystemExit):
    """The run stopped on a signal: its exit status is 128 + the signal's number; `message` says what was kept."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.message = signum, message


class _State:
    installed = False  # this process's handlers are ours (cli() ran)
    training = False  # a training loop acts on a signal at its next step boundary
    stopping = False  # on the way out (saving, requeueing): later signals change nothing
    requested: int | None = None  # the first signal noted while training


STATE = _State()


# what a loader worker ignores: every signal the training process acts on (a terminal's Ctrl-C reaches the whole
# process group; SLURM signals every process of the step; submitit's USR2), so that a worker neither acts on it
# from its stale copy of the trainer nor dies with the batch the step waits for
WORKER_IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def under_submitit(env: Mapping[str, str] = os.environ) -> bool:
    """A job that hydra/launcher=slurm (submitit) started: its sbatch script exports SUBMITIT_EXECUTOR."""
    return env.get("SUBMITIT_EXECUTOR") == "slurm"


def is_launch_leader(env: Mapping[str, str] = os.environ) -> bool:
    """Global rank 0 of the launch: the process that holds the run dir for all the ranks it (or torchrun, or
    srun) starts, and asks SLURM to requeue the job."""
    return all(str(env.get(name, "0")) in ("", "0") for name in RANK_VARIABLES)


def requeues_on_usr1(env: Mapping[str, str] = os.environ) -> bool:
    """A SLURM job started by sbatch/srun (not submitit): SIGUSR1 is its time-limit signal, and ours."""
    return bool(env.get("SLURM_JOB_ID")) and not under_submitit(env)


def owned_signals(env: Mapping[str, str] = os.environ) -> list[int]:
    owned = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    return [*owned, signal.SIGUSR1] if requeues_on_usr1(env) else owned


def install() -> None:
    """Own the stop signals from now on. One ignored already stays ignored (`nohup`, a background job's SIGINT)."""
    for signum in owned_signals():
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _handle)
    STATE.installed, STATE.training, STATE.stopping, STATE.requested = True, False, False, None


def _handle(signum: int, frame) -> None:
    if STATE.stopping:
        return
    if STATE.training and not (signum == signal.SIGINT and STATE.requested == signal.SIGINT):
        if STATE.requested is None:
            STATE.requested = signum
            log.warning("%s: stopping after this step (its state goes to a checkpoint)%s", signal.Signals(signum).name,
                        "; Ctrl-C again stops at once" if signum == signal.SIGINT else "")  # fmt: skip
        return
    if STATE.training:  # a second Ctrl-C
        stop(signum, "at once, without this step's state (the checkpoints written before it stay)")
    stop(signum, "no training step was under way (nothing to save)")


def train(active: bool) -> None:
    """A training loop begins (it will stop at a step boundary) or ends (signals stop the process at once again)."""
    STATE.training = active and STATE.installed
    if not active:
        STATE.requested = None


def requested() -> int | None:
    """The signal noted while training, if any."""
    return STATE.requested


def leaving() -> None:
    """From now on the process is on its way out (saving its state, requeueing): later signals change nothing."""
    STATE.stopping = True


def stop(signum: int, kept: str) -> None:
    """Leave now, saying so on stderr (rank 0): requeue first on SLURM's time-limit signal, then exit 128 +
    `signum` (raises Stopped)."""
    leaving()
    job_id = None
    if signum == signal.SIGUSR1 and requeues_on_usr1() and is_launch_leader():
        job_id = slurm_job_id()
        kept += f"; requeued SLURM job {job_id}" if job_id else "; not requeued: no SLURM job id"
    stopped = Stopped(signum, f"stopped by {signal.Signals(signum).name}: {kept}")
    # said before the requeue: SLURM ends the job at once, and a line written after may never reach its output
    if is_launch_leader():
        print(stopped.message, file=sys.stderr, flush=True)
    if job_id and (failed := requeue(job_id)):
        print(failed, file=sys.stderr, flush=True)
    raise stopped


def slurm_job_id(env: Mapping[str, str] = os.environ) -> str | None:
    """This SLURM job's id, as scontrol names it (a task of an array job by both ids); None outside one."""
    job_id = env.get("SLURM_JOB_ID", "")
    if env.get("SLURM_ARRAY_JOB_ID"):
        job_id = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return job_id if re.fullmatch(r"[0-9]+(_[0-9]+)?", job_id) else None


def requeue(job_id: str) -> str | None:
    """Ask SLURM to requeue the job (it starts again, with ckpt_path=last, from the state kept); None when
    it took the request, else why not."""
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if done.returncode:
        return f"requeueing SLURM job {job_id} failed: {(done.stderr or done.stdout).strip()}"
    return None


@contextlib.contextmanager
def forwarded_to(child: subprocess.Popen) -> Iterator[None]:
    """While a command runs `child` (started in a session of its own, so that a terminal's Ctrl-C reaches it
    only through here, once per press), pass it each stop signal this process gets: it stops as it would alone,
    and this process then ends with its status."""
    previous = {
        signum: signal.signal(signum, lambda signum, frame: child.send_signal(signum)) for signum in owned_signals()
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell gives it: 128 + N for one killed by signal N (Popen says -N)."""
    return 128 - returncode if returncode < 0 else returncode

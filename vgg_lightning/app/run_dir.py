"""The layout of run dirs: where a run keeps its checkpoints and results, and where a reproduction plan puts
each of the paper's rows (`<out>/table3/D_jitter`); and the rules that keep a run dir one run's: a lock, no
fresh run over a finished one, no leftovers of a killed save."""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from .. import paper
from ..checkpoints.files import CHECKPOINTS, PARTIAL, last_checkpoint

RESULTS = "results.json"

log = logging.getLogger(__name__)


def row_dir(out: str, row: paper.Row) -> str:
    """The run dir of a paper row in a plan's folder `out`."""
    return f"{out}/{paper.key(row)}"


def warm_start_checkpoint(experiment: str, out: str) -> str | None:
    """The checkpoint a Table 3 row starts from when the rows run in `out/table3/<row>` (None: from
    model.init). The reproduction plan and the `+sweep=table3` multirun (the `${warm_start:...}` resolver) ask
    this."""
    source = paper.parent(experiment)
    return str(last_checkpoint(row_dir(out, source))) if source else None


# -- a run dir belongs to one run ------------------------------------------------------------------------
LOCK = ".lock"
PREVIOUS = "previous-"  # `move_aside=true` puts an old run's files into <dir>/previous-<time>/
ONE_LINE_ERRORS = "VGG_LIGHTNING_ONE_LINE_ERRORS"  # set by the CLI when the user did not ask for tracebacks
WRITES_RESULTS = ("train", "eval")  # the tasks that write checkpoints or results.json into their run dir


class RunDirError(ValueError):
    """The run dir is another run's, or holds a finished run's files this run would overwrite."""


def launch_identity(env: Mapping[str, str] = os.environ) -> str | None:
    """What a restarted rank 0 of the same launch shares with the first one (a requeued SLURM job keeps its
    job id): such a launch may take over a lock left on another host."""
    if env.get("SLURM_JOB_ID"):
        return f"slurm-{env['SLURM_JOB_ID']}"
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    return None


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (so a recycled pid is not mistaken for the holder)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: Mapping) -> bool:
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def describe(holder: Mapping) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    launch = f", launch {holder['launch']}" if holder.get("launch") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} (started {when}{launch})"


class RunDirLock:
    """`<run dir>/.lock`: pid, host, start time and launch of the run's rank 0, created atomically. A lock whose
    process is dead on this host (or that a restart of the same SLURM job or torchrun launch left) is stale
    and taken over; any other refuses the run, naming its holder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _stale(self, holder: Mapping | None) -> bool:
        if holder is None:  # unreadable: half-written by a process killed at once
            return True
        if holder.get("host") == socket.gethostname():
            return not _alive(holder)
        return holder.get("launch") is not None and holder.get("launch") == launch_identity()

    def acquire(self) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "process_start": _process_start(os.getpid()),
            "launch": launch_identity(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                with os.fdopen(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY), "w") as f:
                    json.dump(me, f)
                self.held = True
                atexit.register(self.release)
                return
            except FileExistsError:
                holder = self.holder()
                if not self._stale(holder):
                    raise RunDirError(
                        f"run dir {self.path.parent} is in use by another run: {describe(holder)}. Choose another "
                        f"hydra.run.dir, or wait for it to end (if it is gone, delete {self.path})"
                    ) from None
                log.warning("taking over the stale lock of %s", describe(holder) if holder else "an unknown run")
                self.path.unlink(missing_ok=True)
        raise RunDirError(f"could not lock run dir {self.path.parent}: other runs keep taking it")

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def finished_files(run_dir: str | Path) -> dict[Path, int]:
    """A run's checkpoints and results (path -> mtime): what a fresh run into the dir would overwrite."""
    run_dir = Path(run_dir)
    paths = [*(run_dir / CHECKPOINTS).glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / RESULTS]
    return {path: path.stat().st_mtime_ns for path in paths if path.is_file()}


def move_aside(run_dir: Path) -> Path:
    """Move everything of the old run (all but the lock and earlier `previous-*` folders) into
    `<dir>/previous-<time>/`: nothing is deleted."""
    target = run_dir / f"{PREVIOUS}{time.strftime('%Y%m%d-%H%M%S')}"
    while target.exists():
        target = target.with_name(target.name + "_")
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name != LOCK and not entry.name.startswith(PREVIOUS):
            entry.rename(target / entry.name)
    return target


def is_resume(task: str, ckpt_path: str | None, run_dir: Path) -> bool:
    """Training that continues this dir's own run: ckpt_path=last, or a checkpoint inside the dir."""
    if task != "train" or not ckpt_path:
        return False
    return ckpt_path == "last" or Path(ckpt_path).resolve().is_relative_to(run_dir.resolve())


def check_fresh_run(run_dir: Path, task: str, ckpt_path: str | None, moving_aside: bool) -> None:
    """A run that is not a resume, into a dir holding a finished run's checkpoints or results: refuse, or move
    the old files aside when asked (`move_aside=true`)."""
    if task not in WRITES_RESULTS or is_resume(task, ckpt_path, run_dir):
        return
    found = finished_files(run_dir)
    if not found:
        return
    if moving_aside:
        log.warning("move_aside=true: the earlier run's files are now in %s", move_aside(run_dir))
        return
    shown = ", ".join(str(p.relative_to(run_dir)) for p in sorted(found)[:3]) + (" ..." if len(found) > 3 else "")
    resume = "pass ckpt_path=last to resume it, " if task == "train" else ""
    raise RunDirError(
        f"run dir {run_dir} already holds a run ({shown}): {resume}choose another hydra.run.dir, or pass "
        f"move_aside=true to move the old files into {run_dir}/{PREVIOUS}<time>/"
    )


def remove_partial_saves(run_dir: Path) -> None:
    """Delete what a save killed half-way left (the dir is locked: no save of ours is in flight)."""
    for path in [*run_dir.glob(f"{PARTIAL}*"), *(run_dir / CHECKPOINTS).glob(f"{PARTIAL}*")]:
        log.warning("removing %s, left by a checkpoint save that was killed", path)
        path.unlink(missing_ok=True)

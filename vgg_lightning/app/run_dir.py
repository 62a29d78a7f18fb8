"""The layout of run dirs: where a run keeps its checkpoints and results, and where a reproduction plan puts
each of the paper's rows (`<out>/table3/D_jitter`); and the rules that keep a run dir one run's: a lock, no
fresh run over a finished one, no leftovers of a killed save."""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from .. import paper
from ..checkpoints.files import CHECKPOINTS, PARTIAL, last_checkpoint
from ..errors import fixable

RESULTS = "results.json"  # train, eval, transfer
PREDICTIONS = "predictions.csv"  # predict
FEATURES = "features.npz"  # features

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
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # set by Lightning, torchrun, srun
ONE_LINE_ERRORS = "VGG_LIGHTNING_ONE_LINE_ERRORS"  # set by the CLI when the user did not ask for tracebacks


class RunDirError(ValueError):
    """The run dir is another run's, or holds a finished run's files this run would overwrite."""


def is_launch_leader(env: Mapping[str, str] = os.environ) -> bool:
    """Global rank 0 of the launch: the process that holds the run dir for all the ranks it (or torchrun, or
    srun) starts. The others find the dir already theirs."""
    return all(str(env.get(name, "0")) in ("", "0") for name in RANK_VARIABLES)


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
    """`<run dir>/.lock`, held for the run's life by a POSIX record lock (`fcntl.lockf`), which the kernel (or
    the NFS server) drops when the process ends, however it ends. The file names its holder (pid, host, start
    time, launch) for the message that refuses another run. Whoever holds the record lock alone judges the file
    it found and writes its own name into it, so two runs can never both take the dir, however slow a write:

    - the record lock is held by another process: the dir is in use (the file may still be empty: its holder
      is writing it), unless the file names a restart of this very launch on another host (a requeued SLURM
      job whose first host died: the NFS lock of a dead host can outlive it), whose lock is taken over;
    - the record lock is free but the file names a live process on this host (a run of an older version, or a
      file system without locks) or a run on another host: in use, as before; a dead process's is stale.

    On a file system that offers no locks (some FUSE mounts, NFS mounted `nolock` across hosts) only the
    file's content is judged, as it was before the record lock, with a warning."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None
        self.owner = os.getpid()  # a forked child that inherits the descriptor holds nothing

    @property
    def held(self) -> bool:
        return self.fd is not None

    def holder(self) -> dict | None:
        """Who the file names (None: nobody yet, or not a lock of ours). Never called by the holder itself:
        closing any descriptor of the file would drop its record lock."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _stale(self, holder: Mapping | None) -> bool:
        if holder is None:  # empty: its writer died before writing (we hold the record lock now)
            return True
        if holder.get("host") == socket.gethostname():
            return not _alive(holder)
        return _restart_of_this_launch(holder)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._take(fd):
                    self.fd, self.owner = fd, os.getpid()
                    atexit.register(self.release)
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise RunDirError(f"could not lock run dir {self.path.parent}: other runs keep taking it")

    def _take(self, fd: int) -> bool:
        """Whether this process now holds the lock through `fd` (False: try again with a fresh file)."""
        locked = _record_lock(fd, self.path)
        if locked is False:
            holder = self.holder()
            if not _restart_of_this_launch(holder):
                raise self._in_use(holder)
            log.warning("taking over the lock of %s: a restart of this launch", describe(holder))
            self.path.unlink(missing_ok=True)
            return False
        if not _same_file(fd, self.path):  # its holder released it (unlinked it) as we opened it
            return False
        found = _read_lock_file(fd)
        if not self._stale(found):
            raise self._in_use(found)
        if found is not None:
            log.warning("taking over the stale lock of %s", describe(found))
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                         "process_start": _process_start(os.getpid()), "launch": launch_identity()})  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        return True

    def _in_use(self, holder: Mapping | None) -> RunDirError:
        who = describe(holder) if holder else "a run starting up (its name is being written)"
        return RunDirError(
            f"run dir {self.path.parent} is in use by another run: {who}. Choose another hydra.run.dir, or wait "
            f"for it to end (if it is gone, delete {self.path})"
        )

    def release(self) -> None:
        """Delete the file (if it is still ours), then drop the record lock: a run waiting on the old file sees it
        gone and starts again on a fresh one."""
        if self.fd is None or self.owner != os.getpid():
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None


def _restart_of_this_launch(holder: Mapping | None) -> bool:
    """A lock left on another host by an earlier start of this launch (a requeued SLURM job keeps its id)."""
    return bool(holder) and holder.get("host") != socket.gethostname() and (
        holder.get("launch") is not None and holder.get("launch") == launch_identity())  # fmt: skip


def _record_lock(fd: int, path: Path) -> bool | None:
    """Take the exclusive record lock of `fd` without waiting: True, False when another process holds it, None
    when the file system offers none."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            log.warning("the file system of %s offers no locks: only the lock file's content is checked", path)
            return None
        raise


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _read_lock_file(fd: int) -> dict | None:
    """The holder a lock file names, read through the holder's own descriptor (None: empty or not ours)."""
    try:
        found = json.loads(os.pread(fd, 1 << 16, 0) or b"null")
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def unusable_run_dir(run_dir: Path, key: str, error: OSError) -> RunDirError:
    """The refusal of a run dir the file system will not let the run create or write (or any other error of
    the file system while the dir is claimed, said as it is)."""
    found = fixable(error, str(run_dir))
    if found is None:
        return RunDirError(f"{key}={run_dir} cannot hold the run: {error}")
    where, what = found
    inside = "" if where is None or Path(where) == run_dir else f" ({where})"
    return RunDirError(f"{key}={run_dir} cannot hold the run{inside}: {what}")


def finished_files(run_dir: str | Path) -> dict[Path, int]:
    """What a finished run of any task left (path -> mtime): its checkpoints, results.json, predictions.csv or
    features.npz, which a fresh run into the dir would overwrite (or leave beside a .hydra/ that no longer
    describes them)."""
    run_dir = Path(run_dir)
    outputs = [run_dir / name for name in (RESULTS, PREDICTIONS, FEATURES)]
    paths = [*(run_dir / CHECKPOINTS).glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt"), *outputs]
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
    """A run that is not a resume, into a dir holding a finished run's files (any task's: a dir holds one run,
    and its .hydra/ describes that run): refuse, or move the old files aside when asked (`move_aside=true`)."""
    if is_resume(task, ckpt_path, run_dir):
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

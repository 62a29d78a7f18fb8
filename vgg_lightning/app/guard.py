"""The Hydra callback that claims a run dir for its run before Hydra writes into it: the lock, the refusal of
a fresh run over a finished one, the leftovers of a killed save removed; and, when a job is refused before it
changed anything, the run dir's `.hydra/` put back as it was (the dir keeps describing its checkpoints)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .run_dir import (
    ONE_LINE_ERRORS,
    RunDirError,
    RunDirLock,
    check_fresh_run,
    finished_files,
    is_launch_leader,
    remove_partial_saves,
    unusable_run_dir,
)


class RunDirGuard(Callback):
    def __init__(self) -> None:
        self.lock: RunDirLock | None = None
        self.run_dir: Path | None = None
        self.saved_config: dict[Path, bytes] = {}
        self.finished: dict[Path, int] = {}

    def _claim(self, run_dir: Path, config: DictConfig, key: str = "hydra.run.dir") -> None:
        """Hydra turns a callback's Exception into a warning and goes on: a refusal must exit."""
        if not is_launch_leader():  # the other ranks work in the dir their rank 0 holds
            return
        try:
            try:
                self._lock_and_check(run_dir, config)
            except OSError as error:  # read-only, full, a name too long: said before any work
                raise unusable_run_dir(run_dir, key, error) from error
        except RunDirError as error:
            if os.environ.get(ONE_LINE_ERRORS) != "1":  # the user's HYDRA_FULL_ERROR=1: the traceback
                traceback.print_exception(error)
                raise SystemExit(1) from error
            raise SystemExit(f"error: {error}") from None

    def _lock_and_check(self, run_dir: Path, config: DictConfig) -> None:
        self.run_dir = run_dir
        self.lock = RunDirLock(run_dir)
        self.lock.acquire()
        try:
            check_fresh_run(run_dir, config.task, config.get("ckpt_path"), bool(config.get("move_aside")))
        except Exception:
            self.lock.release()
            raise
        remove_partial_saves(run_dir)
        self.finished = finished_files(run_dir)
        subdir = config.hydra.output_subdir
        if subdir is not None and (run_dir / subdir).is_dir():
            self.saved_config = {p: p.read_bytes() for p in (run_dir / subdir).iterdir() if p.is_file()}

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # for ${hydra:...} in hydra.run.dir
        self._claim(Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir")))), config)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # each job of a sweep claims its own dir
            self._claim(Path(config.hydra.runtime.output_dir), config, key="hydra.sweep.dir")

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        try:
            refused = job_return.status == JobStatus.FAILED and self.run_dir is not None
            if refused and self.saved_config and finished_files(self.run_dir) == self.finished:
                for path, content in self.saved_config.items():
                    path.write_bytes(content)
        finally:
            if self.lock is not None:
                self.lock.release()
            self.lock, self.run_dir, self.saved_config = None, None, {}

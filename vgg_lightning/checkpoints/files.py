"""The checkpoint files a run names (ckpt_path=, eval.ensemble=, model.init_from=), refused when missing."""

# torch-free: the app refuses a missing file before it pays for importing torch; checkpoints/read.py (which
# reads them) raises the same error through `existing_checkpoint`

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CHECKPOINTS = "checkpoints"  # a run dir's folder of checkpoints
LAST = "last.ckpt"
PARTIAL = ".partial-"  # a checkpoint being written (checkpoints.write): no Lightning rule reads such a name


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / LAST


class CheckpointError(ValueError):
    """A checkpoint that cannot serve this run: missing, unreadable, or of another net."""


def existing_checkpoint(path: str) -> str:
    """`path`, or a CheckpointError when no file is there."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    return path


def weights_paths(ckpt_path: str | None, ensemble: Sequence[str] | None) -> list[str]:
    """The checkpoints a task tests or describes with: ckpt_path, then those of its ensemble setting."""
    return [str(p) for p in [ckpt_path, *(ensemble or [])] if p]


def needed_weights(paths: Sequence[str], task: str) -> list[str]:
    """`paths` (see `weights_paths`), refused when there are none: the task has no net to use."""
    if not paths:
        raise CheckpointError(
            f"task={task} needs the weights to use: ckpt_path=<run dir>/checkpoints/last.ckpt, an ensemble "
            "eval.ensemble=[a.ckpt,b.ckpt], or torchvision's: model=D weights=torchvision"
        )
    return list(paths)


def check_files_exist(paths: Sequence[str | None]) -> None:
    """Refuse, before any work, the first of `paths` (None: not given) that names no file."""
    for path in paths:
        if path:
            existing_checkpoint(str(path))

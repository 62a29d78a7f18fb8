"""The checkpoint files a run names (ckpt_path=, eval.ensemble=, model.init_from=), refused when missing."""

# torch-free: the app refuses a missing file before it pays for importing torch; checkpoints/read.py (which
# reads them) raises the same error through `existing_checkpoint`

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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


def named_checkpoints(cfg: Mapping) -> list[str]:
    """The checkpoint files `cfg.task` will read. ckpt_path=last is not one: it means this run dir's newest
    checkpoint, or a fresh start when there is none (checkpoints.read.resume_path)."""
    task = cfg["task"]
    if task == "train":
        resumed = [cfg["ckpt_path"]] if cfg.get("ckpt_path") not in (None, "last") else []
        return [str(p) for p in [*resumed, cfg["model"].get("init_from")] if p]
    if cfg.get("weights"):  # torchvision's file, looked up by models.torchvision_weights_path
        return []
    if task in ("eval", "predict"):
        return weights_paths(cfg.get("ckpt_path"), cfg["eval"].get("ensemble"))
    if task == "features":
        return weights_paths(cfg.get("ckpt_path"), cfg["features"].get("ensemble"))
    return []


def check_checkpoints_exist(cfg: Mapping) -> None:
    for path in named_checkpoints(cfg):
        existing_checkpoint(path)

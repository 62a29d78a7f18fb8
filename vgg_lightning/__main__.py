"""`python -m vgg_lightning [overrides]` (or `vgg-lightning`): the Hydra app, dispatching on task= through the task
registry (`tasks.TASKS`), with one-line errors."""

# ruff: noqa: E402  (the signal handlers come first, before the imports that take seconds)
from __future__ import annotations

from . import signals

signals.install()  # a SIGTERM, Ctrl-C or SLURM's SIGUSR1 from this instant on is ours (signals.py)

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .app.config_files import primary_config_dir, register_groups
from .app.config_tree import print_config_tree
from .app.help import help_text
from .app.launch import check_multirun, expose_hydra_plugins, external_launcher, rank_consistent_overrides
from .app.overrides import quote_message, unknown_key_message
from .app.quiet import quiet_console, quiet_libraries
from .app.resolvers import register_resolvers
from .app.run_dir import ONE_LINE_ERRORS
from .app.search import check_objective, objective
from .errors import file_system_problem
from .tasks import check, summaries
from .tracking.wandb_runs import finish_wandb

register_resolvers()
register_groups()
expose_hydra_plugins()
PACKAGE = str(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path=primary_config_dir(), config_name="config")
def main(cfg: DictConfig):
    quiet_console()
    check_multirun(cfg)
    task = check(cfg)  # every value the task reads, refused before any work (torch-free)
    check_objective(cfg.get("optimized_metric"), HydraConfig.get().mode == RunMode.MULTIRUN, external_launcher())
    print_config_tree(cfg)
    quiet_libraries()
    try:
        # a float for a sweeper (hparams_search=optuna) when optimized_metric names one, else the results
        return objective(task.run(cfg), cfg.get("optimized_metric"))
    finally:
        finish_wandb()


def user_error(error: BaseException) -> str | None:
    """The message to print, alone, for an error the user can fix: a ValueError (or one of our own error
    classes) raised by our own code, a Hydra config error, or the file system's refusal of a write (a full
    disk, a read-only folder: `errors.file_system_problem`). None: a bug, whose traceback is shown."""
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if (problem := file_system_problem(error)) is not None:
        return problem
    if isinstance(error, OverrideParseException):
        return quote_message(error.override, error.message.splitlines()[0])
    if isinstance(error, HydraException) and type(error.__cause__).__name__ == "MisconfigurationException":
        # Lightning's Trainer refusing its settings (trainer.accelerator=gpu on a machine without one, ...):
        # its words, under the group that holds them, not Hydra's account of the call
        return f"trainer: {error.__cause__} (Lightning's Trainer refused the trainer.* settings: --cfg job shows them)"
    if isinstance(error, (HydraException, OmegaConfBaseException)):
        text = str(error).split("Config search path:")[0]  # where Hydra looked: --info searchpath shows it
        unknown = unknown_key_message(text, sys.argv[1:])
        if unknown:
            return unknown
        first, *rest = [line.strip() for line in text.splitlines() if line.strip()]
        if rest and rest[0].endswith(":"):  # a list of choices, one a line
            rest = [f"{rest[0]} {', '.join(rest[1:])}"]
        if error.__cause__ is not None:
            rest.append(str(error.__cause__).strip().splitlines()[0])
        return "\n".join([first, *(["; ".join(rest)] if rest else [])])
    ours = type(error).__module__.startswith("vgg_lightning")
    if not (isinstance(error, ValueError) or ours):
        return None
    frames = traceback.extract_tb(error.__traceback__)
    return str(error) if frames and frames[-1].filename.startswith(PACKAGE) else None


def cli() -> None:
    """The app, with one-line errors: Hydra is asked to pass every error up (HYDRA_FULL_ERROR), and those the
    user can fix are printed as one message (no traceback), exit code 1. HYDRA_FULL_ERROR=1 set by the
    user shows every traceback, as Hydra does."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        # Printed here, not through Hydra's help template: Hydra lists every config group before filling the
        # template (a deep copy of the config store per group, ~15 s), although our text lists them itself.
        print(help_text(summaries()))
        return
    sys.argv.extend(rank_consistent_overrides(sys.argv[1:]))
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        os.environ.update(HYDRA_FULL_ERROR="1", **{ONE_LINE_ERRORS: "1"})  # inherited by the ranks it starts
    if os.environ.get(ONE_LINE_ERRORS) != "1":
        return main()
    logging.raiseExceptions = False  # a full disk is said once, below, not again by each log line it cannot write
    try:
        main()
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        sys.exit(f"error: {message}")


if __name__ == "__main__":
    cli()

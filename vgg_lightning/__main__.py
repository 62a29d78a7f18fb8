"""`python -m vgg_lightning [overrides]` (or `vgg-lightning`): the Hydra app, dispatching on task=."""

from __future__ import annotations

import importlib
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
from .app.help import TASKS, help_text
from .app.launch import check_multirun, expose_hydra_plugins, external_launcher, rank_consistent_overrides
from .app.quiet import quiet_libraries
from .app.resolvers import register_resolvers
from .app.run_dir import ONE_LINE_ERRORS
from .app.search import check_objective, objective
from .tracking.wandb_runs import finish_wandb

register_resolvers()
register_groups()
expose_hydra_plugins()
PACKAGE = str(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path=primary_config_dir(), config_name="config")
def main(cfg: DictConfig):
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    check_multirun(cfg)
    check_settings(cfg)
    check_objective(cfg.get("optimized_metric"), HydraConfig.get().mode == RunMode.MULTIRUN, external_launcher())
    print_config_tree(cfg)
    module, function, _ = TASKS[cfg.task]
    task = getattr(importlib.import_module(module), function)
    quiet_libraries()  # once Lightning is imported: it sets up its own log handler then
    try:
        # a float for a sweeper (hparams_search=optuna) when optimized_metric names one, else the results
        return objective(task(cfg), cfg.get("optimized_metric"))
    finally:
        finish_wandb()


def check_settings(cfg: DictConfig) -> None:
    """Every value a user can mistype, and the files the task reads, refused before any work (each room checks
    its own, in torch-free modules: the refusal comes before the seconds that importing torch and Lightning
    takes). The cheap checks first: the data folder's comes last, as the demo set is generated there."""
    from .checkpoints.files import check_checkpoints_exist
    from .data.layout import SPLITS, checked_layout, layout_settings
    from .data.readers import read_labelled
    from .data.scales import check_data_settings
    from .evaluation.protocol_settings import EVAL_SPLITS, check_eval_settings, existing_features
    from .models.choices import check_model_settings
    from .training.recipe_settings import check_optim_settings, check_start

    check_model_settings(cfg.model)
    check_data_settings(cfg.data)
    if cfg.task in ("train", "eval"):
        check_eval_settings(cfg.eval)
    if cfg.task == "train":
        check_optim_settings(cfg.optim)
        check_start(cfg.get("weights"), cfg.model.get("init_from"))  # before their files are looked for
    check_checkpoints_exist(cfg)
    if cfg.task == "transfer":
        existing_features(cfg.transfer.features)
    if cfg.task in ("train", "eval"):  # the splits the task's datamodule checks (training/task, evaluation/task)
        checked_layout(**layout_settings(cfg.data, SPLITS if cfg.task == "train" else EVAL_SPLITS))
    if cfg.task == "features":  # the reader checks the layout as it lists the images (again in the task)
        read_labelled(cfg.features.dataset, cfg.features.root, cfg.features.splits)


def user_error(error: BaseException) -> str | None:
    """The message to print, alone, for an error the user can fix: a ValueError (or one of our own error
    classes) raised by our own code, or a Hydra config error. None: a bug, whose traceback is shown."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, (HydraException, OmegaConfBaseException)):
        text = str(error).split("Config search path:")[0]  # where Hydra looked: --info searchpath shows it
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
        print(help_text())
        return
    sys.argv.extend(rank_consistent_overrides(sys.argv[1:]))
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        os.environ.update(HYDRA_FULL_ERROR="1", **{ONE_LINE_ERRORS: "1"})  # inherited by the ranks it starts
    if os.environ.get(ONE_LINE_ERRORS) != "1":
        return main()
    try:
        main()
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        sys.exit(f"error: {message}")


if __name__ == "__main__":
    cli()

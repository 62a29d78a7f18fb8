"""`python -m vgg_lightning [overrides]` (or `vgg-lightning`): the Hydra app, dispatching on task=."""

from __future__ import annotations

import importlib
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .runtime.app_help import TASKS
from .runtime.config_files import primary_config_dir, register_groups
from .runtime.config_tree import print_config_tree
from .runtime.launch import check_multirun, expose_hydra_plugins, external_launcher, rank_consistent_overrides
from .runtime.resolvers import register_resolvers
from .runtime.search import check_objective, objective
from .tracking.runs import finish_wandb

register_resolvers()
register_groups()
expose_hydra_plugins()


@hydra.main(version_base="1.3", config_path=primary_config_dir(), config_name="config")
def main(cfg: DictConfig):
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    check_multirun(cfg)
    check_objective(cfg.get("optimized_metric"), HydraConfig.get().mode == RunMode.MULTIRUN, external_launcher())
    print_config_tree(cfg)
    module, function, _ = TASKS[cfg.task]
    try:
        # a float for a sweeper (hparams_search=optuna) when optimized_metric names one, else the results
        return objective(getattr(importlib.import_module(module), function)(cfg), cfg.get("optimized_metric"))
    finally:
        finish_wandb()


def cli() -> None:
    sys.argv.extend(rank_consistent_overrides(sys.argv[1:]))
    main()


if __name__ == "__main__":
    cli()

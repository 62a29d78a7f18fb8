"""`python -m vgg_lightning [overrides]`: the Hydra app. task=train (default) or task=eval."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .launch import check_multirun, rank_consistent_overrides
from .resolvers import register_resolvers
from .tracking import finish_wandb

TASKS = ("train", "eval")
register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    check_multirun(cfg)
    try:
        if cfg.task == "train":
            from .train import train

            train(cfg)
        else:
            from .evaluate import evaluate

            evaluate(cfg)
    finally:
        finish_wandb()


def cli() -> None:
    sys.argv.extend(rank_consistent_overrides(sys.argv[1:]))
    main()


if __name__ == "__main__":
    cli()

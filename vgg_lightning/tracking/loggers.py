"""Lightning loggers adapted to this project (kept out of tracking.wandb_runs: importing Lightning takes seconds, and
the CLI imports tracking before it knows whether there is any work to do)."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from .wandb_runs import flatten


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, with the LightningModule's hyper-parameters flattened to the same dotted keys
    as the composed config that tracking.wandb_runs.build_loggers gives the run (`model.config`, `optim.lr`): W&B would
    otherwise show a nested `model` dict beside them, each setting twice."""

    def log_hyperparams(self, params) -> None:
        super().log_hyperparams(flatten(params if isinstance(params, Mapping) else vars(params)))

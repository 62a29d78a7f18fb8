"""Lightning loggers adapted to this project (kept out of tracking.wandb_runs: importing Lightning takes seconds, and
the CLI imports tracking before it knows whether there is any work to do)."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from ..compat import wandb_init_arguments
from .wandb_runs import flatten


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, with the LightningModule's hyper-parameters flattened to the same dotted keys
    as the composed config that tracking.wandb_runs.build_loggers gives the run (`model.config`, `optim.lr`): W&B would
    otherwise show a nested `model` dict beside them, each setting twice. It gives `wandb.init` no `anonymous`
    (Lightning passes None, which W&B 0.19+ warns has no effect)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        arguments = wandb_init_arguments(self)
        if arguments.get("anonymous") is None:
            arguments.pop("anonymous", None)

    def log_hyperparams(self, params) -> None:
        super().log_hyperparams(flatten(params if isinstance(params, Mapping) else vars(params)))

"""What this Hydra job is: its run dir, the config files it composed, its config as plain data."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def output_dir() -> Path:
    """The Hydra run dir (never the working directory: Hydra >= 1.2 does not chdir)."""
    return Path(HydraConfig.get().runtime.output_dir)


def group_choice(group: str) -> str | None:
    """Which file of a config group this run composed (e.g. 'table3/D_jitter' for 'experiment')."""
    return HydraConfig.get().runtime.choices.get(group)


def plain_config(cfg: DictConfig) -> dict:
    """A (part of the) config as plain, resolved Python data: what a checkpoint, W&B or results.json keep."""
    return OmegaConf.to_container(cfg, resolve=True)


def command_line_keys() -> set[str]:
    """The keys this run's command line set: `model=A` sets `model`, `model.width=0.5` sets `model.width`."""
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}


def asked_model_keys() -> tuple[str, ...]:
    """Which of a net's settings (config, width) the command line gave: a task that takes its net from a
    checkpoint refuses a checkpoint that differs in these, and takes the rest from it. Outside a Hydra app
    (a config built in Python) every setting counts as given."""
    if not HydraConfig.initialized():
        return ("config", "width")
    keys = command_line_keys()
    return tuple(
        name for name, given in (("config", {"model", "model.config"}), ("width", {"model.width"})) if keys & given
    )

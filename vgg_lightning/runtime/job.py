"""What this Hydra job is: its run dir, the config files it composed, its config as plain data."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def output_dir() -> Path:
    """The Hydra run dir (never the working directory: Hydra >= 1.2 does not chdir)."""
    return Path(HydraConfig.get().runtime.output_dir)


def choice(group: str) -> str | None:
    """Which file of a config group this run composed (e.g. 'table3/D_jitter' for 'experiment')."""
    return HydraConfig.get().runtime.choices.get(group)


def container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)

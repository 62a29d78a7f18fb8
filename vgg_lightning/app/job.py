"""What this Hydra job is: its run dir, the config files it composed, its config as plain data."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .config_files import experiment_net


def output_dir() -> Path:
    """The Hydra run dir (never the working directory: Hydra >= 1.2 does not chdir)."""
    return Path(HydraConfig.get().runtime.output_dir)


def group_choice(group: str) -> str | None:
    """Which file of a config group this run composed (e.g. 'table3/D_jitter' for 'experiment')."""
    return HydraConfig.get().runtime.choices.get(group)


def plain_config(cfg: DictConfig) -> dict:
    """A (part of the) config as plain, resolved Python data: what a checkpoint, W&B or results.json keep."""
    return OmegaConf.to_container(cfg, resolve=True)


def command_line_keys() -> set[str] | None:
    """The keys this run's command line set: `model=A` sets `model`, `model.width=0.5` sets `model.width`. None
    outside a Hydra app (a config built in Python), where every value counts as given."""
    if not HydraConfig.initialized():
        return None
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}


NET_KEYS = {"config": {"model", "model.config"}, "width": {"model.width"}}  # a net's setting -> the keys giving it


def asked_model_keys(keys: set[str] | None = None) -> tuple[str, ...]:
    """Which of a net's settings (config, width) the command line gave (`keys`: its keys, by default this run's):
    a task that takes its net from a checkpoint refuses a checkpoint that differs in these, and takes the rest
    from it. Outside a Hydra app every setting counts as given."""
    keys = command_line_keys() if keys is None else keys
    if keys is None:
        return tuple(NET_KEYS)
    return tuple(name for name, giving in NET_KEYS.items() if keys & giving)


def experiment_named_net() -> str | None:
    """The net this run's experiment file names (`config_files.experiment_net`), looked for where Hydra looked
    (ours, then a `--config-dir`'s experiment/)."""
    sources = HydraConfig.get().runtime.config_sources
    folders = [Path(s.path) / "experiment" for s in sources if s.schema == "file"]
    return experiment_net(group_choice("experiment"), folders)

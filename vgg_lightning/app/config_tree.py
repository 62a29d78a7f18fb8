"""The composed config as a rich tree, printed when a run starts (as lightning-hydra-template does); the
config itself is saved with the run by Hydra (.hydra/config.yaml)."""

from __future__ import annotations

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

TITLE = "composed config"
FIRST = ("task", "model", "data", "optim", "trainer", "callbacks", "logger", "eval")  # the rest follow as composed


def _yaml(node) -> str:
    """Resolved (the values the run uses); as written where a value cannot be resolved yet, which the task
    itself then reports with its own message."""
    try:
        return OmegaConf.to_yaml(node, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_yaml(node)


def print_config_tree(cfg: DictConfig) -> None:
    """One branch per top-level key, its YAML inside; on stderr (stdout stays for what tools parse), by
    rank 0 only (under DDP every rank composes the config)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    if not cfg.get("print_config", True) or rank_zero_only.rank != 0:
        return
    tree = Tree(TITLE, style="dim", guide_style="dim")
    for key in [*(k for k in FIRST if k in cfg), *(k for k in cfg if k not in FIRST)]:
        node = cfg[key]
        text = _yaml(node) if OmegaConf.is_config(node) else yaml.safe_dump(node)
        tree.add(str(key), style="dim", guide_style="dim").add(Syntax(text.removesuffix("...\n").rstrip(), "yaml"))
    Console(stderr=True).print(tree)

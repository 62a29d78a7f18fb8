"""Where metrics go: W&B (offline unless the user has logged in), CSV, or nowhere."""

from __future__ import annotations

import netrc
import os

from omegaconf import OmegaConf


def wandb_mode() -> str:
    """WANDB_MODE if set; 'online' when an API key is known (`wandb login` or WANDB_API_KEY); else 'offline'.
    Never 'online' without a key, so a non-interactive shell is never asked for one."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        if netrc.netrc().authenticators(host):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_mode"):
        OmegaConf.register_new_resolver("wandb_mode", wandb_mode)


def finish_wandb() -> None:
    """End this job's W&B run: Lightning's WandbLogger never does, and in a multirun the next job would
    otherwise log into this one's run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()

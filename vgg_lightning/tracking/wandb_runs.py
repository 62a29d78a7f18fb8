"""W&B runs: offline unless the user has logged in, one per job, named, tagged and grouped so that runs compare
with the paper's rows.

One W&B run per job: named after the net and its scales, tagged (config, S, Q, experiment, task), grouped by
experiment or by sweep folder, with the composed config as flat dotted keys (`model.config`, `data.scale`)
and the final results in its summary (`results.top1_error`). The run id lives in the run dir, so a job that
resumes in the same run dir continues the same W&B run.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
import sys
from collections.abc import Mapping
from pathlib import Path

from ..paper import format_scale, format_test_scales

log = logging.getLogger(__name__)
RUN_ID_FILE = Path("wandb") / "run_id"  # inside the run dir, beside W&B's own run folders


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


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """{'model': {'config': 'A'}} -> {'model.config': 'A'}: one W&B column per setting instead of a dict."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


# -- what a job's W&B run is called and where it is filed ---------------------------------------------------
def run_tags(settings: Mapping) -> list[str]:
    """config, S, Q, experiment row, task: what one filters W&B's run table by."""
    tags = [
        settings["config"],
        f"S{format_scale(settings['train_scale'])}",
        f"Q{format_test_scales(settings['test_scales'])}",
        settings["task"],
    ]
    return tags + ([settings["experiment"]] if settings.get("experiment") else [])


def run_name(settings: Mapping, job: int | None = None) -> str:
    name = (
        f"{settings['config']} S{format_scale(settings['train_scale'])} Q{format_test_scales(settings['test_scales'])}"
    )
    if settings["task"] != "train":
        name += f" {settings['task']}"
    return name if job is None else f"{name} #{job}"


def run_id(run_dir: Path) -> str | None:
    """The W&B id of this run dir's run: made once, by rank 0, and kept in the run dir (where the report
    finds it too). A W&B sweep agent names the run its job must log into (WANDB_RUN_ID): that one wins.
    Ranks > 0 never create a W&B run, and may start before rank 0 has written the file."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    path = run_dir / RUN_ID_FILE
    given = os.environ.get("WANDB_RUN_ID")
    if not given and path.exists():
        return path.read_text().strip()
    if rank_zero_only.rank != 0:
        return given
    new = given or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n")
    return new


def wandb_run_args(config: Mapping, settings: Mapping, run_dir: Path, sweep: tuple[str, int] | None = None) -> dict:
    """wandb.init's name, group, tags, id, job_type and config for a job: `config` is the composed config as
    plain data, `settings` the job's config, S, Q, experiment and task (as results.json spells them), `sweep`
    the multirun's folder and this job's number in it."""
    return {
        "name": run_name(settings, sweep[1] if sweep else None),
        # a sweep's jobs belong together whatever their experiment; a lone run files under its experiment
        "group": sweep[0] if sweep else settings["experiment"],
        "tags": run_tags(settings),
        "id": run_id(run_dir),
        "job_type": settings["task"],
        "config": {**flatten(config), "experiment": settings["experiment"], "run_dir": str(run_dir)},
        # W&B's own console lines (its banner, an offline run's sync hints, the run's history and summary, 5 to
        # 25 lines) give way to one of ours when the run ends (`finish_wandb`)
        "settings": {"silent": True},
    }


def is_wandb(node) -> bool:
    """Whether a conf/logger entry is a W&B logger (ours, Lightning's, or one of one's own built on it)."""
    from hydra.utils import get_class
    from lightning.pytorch.loggers import WandbLogger

    return node is not None and issubclass(get_class(node._target_), WandbLogger)


def build_loggers(loggers_cfg, wandb_args: Mapping | None = None) -> list:
    """conf/logger/* instantiated. A W&B logger gets this job's run arguments (`wandb_args`, see
    `wandb_run_args`) where its config leaves them null; tags given there (`+logger.wandb.tags=[mine]`) are
    added to ours."""
    from hydra.utils import instantiate

    loggers = []
    for node in (loggers_cfg or {}).values():
        if node is None:
            continue
        extra = {}
        if is_wandb(node):
            if wandb_args is None:
                raise ValueError("a W&B logger needs this job's run arguments (name, tags, id): pass wandb_args")
            extra = {k: v for k, v in wandb_args.items() if k != "tags" and node.get(k) is None}
            extra["tags"] = [*wandb_args["tags"], *(node.get("tags") or [])]
        # through a partial: instantiate's own first parameter is called `config`, as is wandb.init's
        loggers.append(instantiate(node, _partial_=True)(**extra))
    return loggers


def log_results(trainer, results: Mapping) -> None:
    """The final results into the W&B run's summary as `results.<key>`, beside the last logged metrics."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(flatten(results, "results"))


def finish_wandb() -> None:
    """End this job's W&B run: Lightning's WandbLogger never does, and in a multirun the next job would
    otherwise log into this one's run. Called in a `finally`: a job ending in an exception is marked failed."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        run = wandb.run
        name, where = (
            run.name,
            f"offline in {run.settings.sync_dir} (wandb sync uploads it)" if run.offline else run.url,
        )
        wandb.finish(exit_code=1 if sys.exc_info()[0] is not None else 0)
        log.info("W&B run %s: %s", name, where)

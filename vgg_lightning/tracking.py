"""Where metrics go: W&B (offline unless the user has logged in), CSV, or nowhere; and W&B's run files read back.

One W&B run per job: named after the net and its scales, tagged (config, S, Q, experiment, task), grouped by
experiment or by sweep folder, with the composed config as flat dotted keys (`model.config`, `data.scale`)
and the final results in its summary (`results.top1_error`). The run id lives in the run dir, so a job that
resumes in the same run dir continues the same W&B run.
"""

from __future__ import annotations

import json
import netrc
import os
import secrets
import string
import struct
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path


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
def format_scale(scale) -> str:
    """256 -> '256'; [256, 512] -> '256-512' (the paper's [256;512], as a tag may spell it)."""
    return "-".join(str(s) for s in scale) if isinstance(scale, (list, tuple)) else str(scale)


def run_tags(settings: Mapping) -> list[str]:
    """config, S, Q, experiment row, task: what one filters W&B's run table by."""
    tags = [
        settings["config"],
        f"S{format_scale(settings['train_scale'])}",
        f"Q{format_scale(settings['test_scales'])}",
        settings["task"],
    ]
    return tags + ([settings["experiment"]] if settings.get("experiment") else [])


def run_name(settings: Mapping, job: int | None = None) -> str:
    name = f"{settings['config']} S{format_scale(settings['train_scale'])} Q{format_scale(settings['test_scales'])}"
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


def job_settings(cfg, known: Mapping | None = None) -> dict:
    """config, S, Q, experiment and task of this job, as results.json will spell them. `known` holds what the
    job has already worked out (an evaluation: the checkpoints' configs and S, its Q); the rest comes from
    the config, through the datamodule's own rules (jitter, Q's default; cheap: no files are read)."""
    from hydra.utils import instantiate

    from .runs import choice

    known = dict(known or {})
    if not {"config", "train_scale", "test_scales"} <= known.keys():
        data = instantiate(cfg.data)
        known = {"config": cfg.model.config, "train_scale": data.scale_label, "test_scales": [data.test_scale], **known}
    return {**known, "experiment": choice("experiment"), "task": cfg.task}


def wandb_run_args(cfg, known: Mapping | None = None) -> dict:
    """wandb.init's name, group, tags, id, job_type and config for this Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .runs import container, output_dir

    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    settings = job_settings(cfg, known)
    run_dir = output_dir()
    return {
        "name": run_name(settings, hydra.job.num if multirun else None),
        # a sweep's jobs belong together whatever their experiment; a lone run files under its experiment
        "group": str(hydra.sweep.dir) if multirun else settings["experiment"],
        "tags": run_tags(settings),
        "id": run_id(run_dir),
        "job_type": cfg.task,
        "config": {**flatten(container(cfg)), "experiment": settings["experiment"], "run_dir": str(run_dir)},
    }


def build_loggers(cfg, known: Mapping | None = None) -> list:
    """conf/logger/* instantiated. A W&B logger gets this job's run arguments (see `job_settings` for `known`)
    where its config leaves them null; tags given there (`+logger.wandb.tags=[mine]`) are added to ours."""
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.loggers import WandbLogger

    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None:
            continue
        extra = {}
        if issubclass(get_class(node._target_), WandbLogger):
            ours = wandb_run_args(cfg, known)
            extra = {k: v for k, v in ours.items() if k != "tags" and node.get(k) is None}
            extra["tags"] = [*ours["tags"], *(node.get("tags") or [])]
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
        wandb.finish(exit_code=1 if sys.exc_info()[0] is not None else 0)


# -- reading a run's .wandb file (offline runs keep everything there; online runs keep a copy) -------------
_BLOCK, _HEADER = 32768, 7  # W&B's log format: LevelDB's, 32 KiB blocks, 7-byte record headers
_FULL, _FIRST, _LAST = 1, 2, 4


def _records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, chunks = _HEADER, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        chunks = chunk if kind in (_FULL, _FIRST) else chunks + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            yield record


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def _value(item):
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    return getattr(item, kind) if kind else None


def read_wandb_run(path: Path) -> dict:
    """A run's `run-<id>.wandb` file as plain data: id, name, group, tags, config, summary and history
    (one dict per logged step)."""
    run = {"id": None, "name": None, "group": None, "tags": [], "config": {}, "summary": {}, "history": []}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, name=r.display_name, group=r.run_group, tags=list(r.tags))
            run["config"].update({_key(i): _value(i) for i in r.config.update})
        elif kind == "config":
            run["config"].update({_key(i): _value(i) for i in record.config.update})
        elif kind == "summary":
            run["summary"].update({_key(i): _value(i) for i in record.summary.update})
        elif kind == "history":
            run["history"].append({_key(i): _value(i) for i in record.history.item})
    run["config"].pop("_wandb", None)
    return run


def wandb_run_files(run_dir: Path) -> list[Path]:
    """The .wandb files of a run dir, oldest first (a resumed job adds one, with the same run id)."""
    return sorted(p for p in Path(run_dir).glob("wandb/*run-*/run-*.wandb") if "latest-run" not in p.parts)

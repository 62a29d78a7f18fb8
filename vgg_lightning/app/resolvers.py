"""The OmegaConf resolvers the configs use, decided on the machine and in the job that runs:
`${wandb_mode:}` (offline unless logged in), `${default_precision:}` (bf16-mixed with a GPU) and
`${warm_start:<experiment>,<dir>}` (the checkpoint a Table 3 row starts from), `${paper_test_scales:<row>}` (the Q
of a row of Tables 4-6, from paper.py), `${paper_transfer:<data set>,scales|aggregate}` (Table 11's descriptor),
`${weights_normalize:<weights>}` (the input scaling released weights take), `${workers:<devices>[,most]}` (loader processes: this machine's share of cores per training process, less one),
`${slurm_cpus_per_task:}`, `${slurm_gpus_per_node:}` (hydra/launcher=slurm's resources). Imports stay inside the
functions so that composing a config does not import Lightning."""

from __future__ import annotations

from omegaconf import ListConfig, OmegaConf


def _wandb_mode() -> str:
    from ..tracking.wandb_runs import wandb_mode

    return wandb_mode()


def _default_precision() -> str:
    from ..speed import default_precision

    return default_precision()


def _warm_start(experiment: str, out: str) -> str | None:
    from .run_dir import warm_start_checkpoint

    return warm_start_checkpoint(experiment, out)


def _paper_test_scales(row: str) -> ListConfig:
    from ..paper import test_scales

    return ListConfig(test_scales(row))  # a config node, not a list: OmegaConf.resolve (--cfg --resolve) keeps it


def _paper_transfer(dataset: str, key: str):
    from ..paper import transfer_setting

    value = transfer_setting(dataset, key)
    return ListConfig(value) if isinstance(value, list) else value


def _weights_normalize(weights) -> str:
    from ..checkpoints.weights import input_scaling

    return input_scaling(weights)


def _slurm_cpus_per_task(num_workers) -> int:
    from .launch import slurm_cpus_per_task

    return slurm_cpus_per_task(num_workers)


def _slurm_gpus_per_node(accelerator, devices) -> int | None:
    from .launch import slurm_gpus_per_node

    return slurm_gpus_per_node(accelerator, devices)


def _workers(devices=1, most=None) -> int:
    """Loader processes for each training process: the cores this process may use, shared among the training
    processes of this machine (one per device, trainer.devices), less one for the training process itself; at
    most `most`. A process that srun (SLURM) or a launcher pinned to cores of its own shares them with no one."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get("SLURM_STEP_ID") is not None and os.environ.get("SLURM_CPUS_PER_TASK"):
        sharing = 1  # srun gave this task its own cpus_per_task cores: the affinity above
    elif os.environ.get("LOCAL_WORLD_SIZE"):
        sharing = int(os.environ["LOCAL_WORLD_SIZE"])  # torchrun's processes on this machine
    else:
        sharing = _device_count(devices)
    workers = max(0, cores // max(sharing, 1) - 1)
    return workers if most is None else min(workers, int(most))


def _device_count(devices) -> int:
    """How many devices Lightning's `devices` names: 4, [0, 1], "0,1", or -1 / "auto" (every GPU; 1 without)."""
    if not isinstance(devices, str) and hasattr(devices, "__len__"):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    if text.isdigit():
        return max(int(text), 1)
    import torch

    return max(torch.cuda.device_count(), 1)


def register_resolvers() -> None:
    for name, resolver in (
        ("workers", _workers),
        ("wandb_mode", _wandb_mode),
        ("default_precision", _default_precision),
        ("warm_start", _warm_start),
        ("paper_test_scales", _paper_test_scales),
        ("paper_transfer", _paper_transfer),
        ("weights_normalize", _weights_normalize),
        ("slurm_cpus_per_task", _slurm_cpus_per_task),
        ("slurm_gpus_per_node", _slurm_gpus_per_node),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)

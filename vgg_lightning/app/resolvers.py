"""The OmegaConf resolvers the configs use, decided on the machine and in the job that runs:
`${wandb_mode:}` (offline unless logged in), `${default_precision:}` (bf16-mixed with a GPU) and
`${warm_start:<experiment>,<dir>}` (the checkpoint a Table 3 row starts from), `${paper_test_scales:<row>}` (the Q
of a row of Tables 4-6, from paper.py), `${paper_transfer:<data set>,scales|aggregate}` (Table 11's descriptor), `${workers:8}` (loader processes: min(8, cores - 1)),
`${slurm_cpus_per_task:}`, `${slurm_gpus_per_node:}` (hydra/launcher=slurm's resources). Imports stay inside the
functions so that composing a config does not import Lightning."""

from __future__ import annotations

from omegaconf import OmegaConf


def _wandb_mode() -> str:
    from ..tracking.wandb_runs import wandb_mode

    return wandb_mode()


def _default_precision() -> str:
    from ..speed import default_precision

    return default_precision()


def _warm_start(experiment: str, out: str) -> str | None:
    from .run_dir import warm_start_checkpoint

    return warm_start_checkpoint(experiment, out)


def _paper_test_scales(row: str) -> list[int]:
    from ..paper import test_scales

    return test_scales(row)


def _paper_transfer(dataset: str, key: str):
    from ..paper import transfer_setting

    return transfer_setting(dataset, key)


def _slurm_cpus_per_task(num_workers) -> int:
    from .launch import slurm_cpus_per_task

    return slurm_cpus_per_task(num_workers)


def _slurm_gpus_per_node(accelerator, devices) -> int | None:
    from .launch import slurm_gpus_per_node

    return slurm_gpus_per_node(accelerator, devices)


def _workers(most: int | str = 8) -> int:
    """Loader processes for this machine: one core left to the main process, at most `most`."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(int(most), cores - 1))


def register_resolvers() -> None:
    for name, resolver in (
        ("workers", _workers),
        ("wandb_mode", _wandb_mode),
        ("default_precision", _default_precision),
        ("warm_start", _warm_start),
        ("paper_test_scales", _paper_test_scales),
        ("paper_transfer", _paper_transfer),
        ("slurm_cpus_per_task", _slurm_cpus_per_task),
        ("slurm_gpus_per_node", _slurm_gpus_per_node),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)

"""Who starts the processes: Lightning itself, torchrun, or SLURM. Each rank composes the config again, so
anything a rank would pick on its own (a timestamped run dir) must be made the same on every rank."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


def external_launcher(env: Mapping[str, str] = os.environ) -> str | None:
    """'torchrun' or 'slurm' when the processes were made outside Lightning, else None."""
    if env.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if env.get("SLURM_NTASKS") and env.get("SLURM_JOB_NAME") not in (None, "bash", "interactive"):
        return "slurm"
    return None


def _shared_launch(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(a name for the run dir all ranks share, this process's rank) when several processes each run Hydra:
    torchrun's, or one `srun` step of several tasks (named by job and step id, which a requeued job keeps)."""
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}", env.get("RANK", "0")
    if env.get("SLURM_STEP_ID") and int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1) > 1:
        return f"slurm-{env.get('SLURM_JOB_ID')}.{env['SLURM_STEP_ID']}", env.get("SLURM_PROCID", "0")
    return None


def rank_consistent_overrides(args: Sequence[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """Under torchrun or srun every rank runs Hydra: give them one run (and sweep) dir named by the launch
    instead of each its own timestamp, and let only rank 0 write the composed config."""
    launch = _shared_launch(env)
    if launch is None:
        return []
    name, rank = launch
    extra = []
    for key, folder in (("hydra.run.dir", "outputs/${task}"), ("hydra.sweep.dir", "multirun")):
        if any(arg.startswith(f"{key}=") for arg in args):
            continue
        if name == "torchrun-none":
            raise SystemExit(
                f"torchrun gave no run id: pass --rdzv-id=<name> to torchrun, or {key}=<one dir for all ranks>"
            )
        extra.append(f"{key}={folder}/{name}")
    if rank != "0":
        extra.append("hydra.output_subdir=null")
    return extra


def check_multirun(cfg: DictConfig) -> None:
    """`-m` with several devices hangs or recurses when Lightning spawns the processes (its children see `-m`
    and start sweeps of their own; Lightning #15737): refuse it before any work and say what works."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    # a value that is no count at all is left to the Trainer's settings check (tasks.check), which names it
    several = (
        (isinstance(nodes, int) and nodes > 1) or devices in ("auto", -1) or (isinstance(devices, int) and devices > 1)
    )
    if several and external_launcher() is None and "spawn" not in str(cfg.trainer.get("strategy")):
        raise SystemExit(
            f"a multirun (-m) with trainer.devices={devices} cannot let Lightning start the processes. Use "
            "torchrun --nproc_per_node=N -m vgg_lightning -m ..., or hydra/launcher=slurm (see docs/scale-out.md)"
        )


def under_submitit(env: Mapping[str, str] = os.environ) -> bool:
    """A job that hydra/launcher=slurm (submitit) started: its sbatch script exports SUBMITIT_EXECUTOR."""
    return env.get("SUBMITIT_EXECUTOR") == "slurm"


def cluster_plugins(env: Mapping[str, str] = os.environ) -> list:
    """One owner for SLURM's time-limit signal. Under submitit it is submitit's (USR2: it requeues the job,
    which resumes from the last step checkpoint), so Lightning's auto-requeue is switched off; with plain
    sbatch it is Lightning's (SLURMEnvironment's default: SIGUSR1 saves hpc_ckpt_N.ckpt and requeues)."""
    if not under_submitit(env):
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def slurm_cpus_per_task(num_workers: int) -> int:
    """A task's CPUs: one per loader worker, and one for the training process itself."""
    return max(int(num_workers), 0) + 1


def slurm_gpus_per_node(accelerator: str, devices) -> int | None:
    """GPUs per node only when the run asks for them (trainer.accelerator gpu, cuda or auto: one per device);
    none for trainer.accelerator=cpu, so a CPU partition takes the job."""
    if str(accelerator).lower() == "cpu":
        return None
    return int(devices) if str(devices).isdigit() else None


def expose_hydra_plugins() -> None:
    """Hydra finds launchers by listing the folders of the `hydra_plugins` namespace, which an editable install
    (setuptools >= 64, `pip install -e`) replaces by an import hook that lists nothing (Hydra #2359, #3252):
    add the real folder of our launcher (hydra_plugins/vgg_lightning_slurm) to the namespace's path."""
    import importlib.util

    try:
        import hydra_plugins

        spec = importlib.util.find_spec("hydra_plugins.vgg_lightning_slurm")
    except ImportError:
        return
    if spec is not None and spec.origin:
        folder = os.path.dirname(os.path.dirname(spec.origin))
        if folder not in list(hydra_plugins.__path__):
            hydra_plugins.__path__.append(folder)

"""What the submitting command of hydra/launcher=slurm says about its jobs: a job that SLURM requeued (preempted,
or at its time limit) and that then finished is "completed after N requeue(s)", not failed; each job's result."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hydra.core.utils import JobReturn, filter_overrides


def requeues(env: Mapping[str, str] = os.environ) -> int:
    """How often SLURM has requeued the job this process runs in (SLURM_RESTART_COUNT)."""
    return int(env.get("SLURM_RESTART_COUNT") or 0)


def job_summary(job: JobReturn) -> str:
    """One line for a finished job: its number and overrides, its requeues, its result or its error."""
    overrides = " ".join(filter_overrides(job.overrides or []))
    number = job.hydra_cfg.hydra.job.num if job.hydra_cfg is not None else "?"
    count = getattr(job, "requeues", 0)
    history = f" after {count} requeue(s)" if count else ""
    try:
        value = job.return_value  # re-raises the job's exception when it failed
    except Exception as error:
        return f"#{number} {overrides}: failed{history}: {type(error).__name__}: {error}"
    outcome = "done"
    if isinstance(value, Mapping) and "top1_error" in value:
        outcome = f"top-1 error {value['top1_error']:.2f}%, top-5 error {value.get('top5_error', 0):.2f}%"
    return f"#{number} {overrides}: completed{history}: {outcome} -> {job.working_dir}"

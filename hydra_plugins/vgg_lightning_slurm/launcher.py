"""hydra-submitit-launcher's SlurmLauncher, telling a requeued job from a failed one and ending with each job's
result (defined only when the [slurm] extra is installed: Hydra imports every plugin module at start-up)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus

from vgg_lightning.app.slurm_jobs import job_summary, requeues

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:
    SlurmLauncher = None

if SlurmLauncher is not None:

    class RequeueAwareSlurmLauncher(SlurmLauncher):
        def __call__(self, *args, **kwargs) -> JobReturn:
            job = super().__call__(*args, **kwargs)  # inside the SLURM job, after the task has run
            job.requeues = requeues()
            return job

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            log.info("%d SLURM job(s): a preempted job is requeued and resumes from its checkpoint", len(job_overrides))
            jobs = super().launch(job_overrides, initial_job_idx)
            for job in jobs:
                (log.info if job.status == JobStatus.COMPLETED else log.error)(job_summary(job))
            return jobs

"""The Hydra app's plumbing: what a job is (job), its run dir and the lock that keeps it one run's (run_dir,
guard), who starts the processes (launch, slurm_jobs), the config files and resolvers, the Trainer a job builds,
its results.json, the hyper-parameter search's objective, and what `--help` says."""

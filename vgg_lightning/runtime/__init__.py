"""The run plumbing: what a Hydra job is, its run dir, trainer, checkpoints (read and written), results.json,
launchers, resolvers, speed switches, and the one module that touches library internals (compat)."""

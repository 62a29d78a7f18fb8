"""Checkpoints: which files a run names (files), the released weights it may name instead (weights), reading
them safely (read), writing them atomically (write), and the nets they hold (nets)."""

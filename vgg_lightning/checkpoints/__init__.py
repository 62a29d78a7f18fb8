"""Checkpoints: which files a run names (files), reading them safely (read), writing them atomically (write),
and the nets they hold, or torchvision's (nets)."""

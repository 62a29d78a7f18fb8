"""How checkpoints are written: atomically (a kill never leaves half a file), last.ckpt always the last state,
and the random state Lightning does not save."""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .compat import checkpoint_defers_until_validation, checkpoint_saves_on_train_epoch_end, save_last_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, then rename: a kill during the write leaves the previous
    checkpoint intact, never half a file (Lightning itself writes in place)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        staging = f"{path}.tmp-{os.getpid()}"
        try:
            super().save_checkpoint(checkpoint, staging, storage_options)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.remove(staging)


class PreemptibleCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `last.ckpt` always the last state:
    - Lightning 2.6 rewrites last.ckpt only when a top-k checkpoint is saved, so after an epoch that did not
      improve the val error, "last" would be the best epoch's weights: a resume would go back in time, and
      the reproduction chain would pass on the wrong net;
    - a step-triggered save (`every_n_train_steps`) before the first validation still writes last.ckpt
      (Lightning defers it until the monitored metric exists, so a job preempted in its first ImageNet epoch
      would have nothing to resume from)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if checkpoint_defers_until_validation(self):
            save_last_checkpoint(self, trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if checkpoint_saves_on_train_epoch_end(self, trainer):
            save_last_checkpoint(self, trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not checkpoint_saves_on_train_epoch_end(self, trainer):
            save_last_checkpoint(self, trainer)


def _random_state() -> dict:
    # only tensors and plain Python values: Lightning loads checkpoints with weights_only=True
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(L.Callback):
    """Save every rank's RNG state (dropout draws from it) in the checkpoint and restore it on resume, so a
    run killed and resumed draws the same dropout masks as one that never stopped."""

    def state_dict(self) -> dict:
        state = _random_state()
        if dist.is_available() and dist.is_initialized():
            states: list = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)
            return {"ranks": states}
        return {"ranks": [state]}

    def load_state_dict(self, state_dict: dict) -> None:
        ranks = state_dict.get("ranks") or []
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if rank < len(ranks):
            _set_random_state(ranks[rank])

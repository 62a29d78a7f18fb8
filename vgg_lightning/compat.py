"""Every use of a library's private internals, in one place, each where no public API does the job. When a
release renames one, `check_internals` names it and `tests/test_package.py` fails, before any run does.

- torch: `aten._upsample_bilinear2d_aa`, the antialiased bilinear resampling behind `F.interpolate`, which
  takes an output size *and* scale factors (the public function takes one or the other; a crop of a rescaled
  image needs both to be pixel-identical to the full rescale then the crop).
- Lightning's ModelCheckpoint: when it defers saving until validation, whether it saves at train-epoch end,
  whether to skip a save, and its save of last.ckpt (see `checkpoints.write.PreemptibleCheckpoint`).
- Lightning's RichProgressBar: its rich `Progress` and the test bar's task, to show images/s in its title.
- Lightning's DDPStrategy: the keyword arguments it passes to DistributedDataParallel, to decide `static_graph`
  when fit starts, once the trainer's gradient accumulation is known (`training.ddp.VGGDDPStrategy`).
- torch's pickle format: the functions a checkpoint's pickle names to rebuild its tensors, the only callables
  our restricted unpickler builds (`checkpoints.unpickle`).
- Lightning's signal connector: the handlers a Trainer installs when a stage starts (SIGTERM ends the run with
  exit status 0 and no checkpoint; SIGUSR1 on SLURM saves mid-step), kept out where the process owns its
  signals from its first instant (`signals`).
- Lightning's checkpoint connector: on SLURM, `trainer.fit(model)` or `trainer.test(model)` without a ckpt_path
  loads the run dir's newest `hpc_ckpt_N.ckpt` (`_parse_ckpt_path`), a file our own rules did not pick (or
  refused); no public argument says "none".
- Lightning's WandbLogger: the arguments it gives `wandb.init`, among them an `anonymous=None` that W&B warns
  about on every run (`tracking.loggers.WandbLogger` leaves it out).
"""

from __future__ import annotations

import torch

# (module, name) of the tensor rebuild functions torch.save writes into a checkpoint's pickle
TORCH_PICKLE_GLOBALS = (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"))

# (where, attribute): what `check_internals` looks for
INTERNALS = (
    ("torch.ops.aten", "_upsample_bilinear2d_aa"),
    *TORCH_PICKLE_GLOBALS,
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_should_skip_saving_checkpoint"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_save_last_checkpoint"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_monitor_candidates"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_should_save_on_train_epoch_end"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_defer_save_until_validation"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_last_global_step_saved"),
    ("lightning.pytorch.callbacks.RichProgressBar", "progress"),
    ("lightning.pytorch.callbacks.RichProgressBar", "test_progress_bar_id"),
    ("lightning.pytorch.trainer.connectors.checkpoint_connector._CheckpointConnector", "_select_ckpt_path"),
    ("lightning.pytorch.strategies.DDPStrategy", "_ddp_kwargs"),
    ("lightning.pytorch.Trainer", "_signal_connector"),
    ("lightning.pytorch.trainer.connectors.signal_connector._SignalConnector", "register_signal_handlers"),
    ("lightning.pytorch.loggers.WandbLogger", "_wandb_init"),
)


def upsample_bilinear_aa(source: torch.Tensor, size: list[int], scale_y: float, scale_x: float) -> torch.Tensor:
    """Antialiased bilinear resampling of (N, C, H, W) `source` to `size`, with the scale factors given."""
    return torch.ops.aten._upsample_bilinear2d_aa(source, size, False, scale_y, scale_x)


def checkpoint_defers_until_validation(callback) -> bool:
    """A step-triggered ModelCheckpoint waiting for its monitored metric (no validation has run yet)."""
    return bool(callback._defer_save_until_validation)


def checkpoint_saves_on_train_epoch_end(callback, trainer) -> bool:
    return bool(callback._should_save_on_train_epoch_end(trainer))


def save_last_checkpoint(callback, trainer, resave_step: bool = False) -> None:
    """Write the callback's last.ckpt now, unless Lightning would skip any save here (sanity check, a
    fast_dev_run, the same step saved already: with `resave_step`, that one save is made again)."""
    if resave_step and callback._last_global_step_saved == trainer.global_step:
        callback._last_global_step_saved = -1
    if callback.save_last and not callback._should_skip_saving_checkpoint(trainer):
        callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def last_saved_step(callback) -> int:
    """The global step of the callback's latest save."""
    return callback._last_global_step_saved


def ddp_options(strategy) -> dict:
    """The DDPStrategy's keyword arguments for DistributedDataParallel (the dict itself: changes take effect at
    its `configure_ddp`)."""
    return strategy._ddp_kwargs


def wandb_init_arguments(logger) -> dict:
    """The keyword arguments a Lightning WandbLogger will give `wandb.init` (the dict itself: changes take
    effect when it starts its run)."""
    return logger._wandb_init


def set_test_bar_title(bar, title: str) -> None:
    """Retitle the rich progress bar's test task (it counts batches and shows no metrics while testing)."""
    task = getattr(bar, "test_progress_bar_id", None)
    progress = getattr(bar, "progress", None)
    if progress is not None and task is not None:
        progress.update(task, description=title)


def without_signal_handlers(trainer) -> None:
    """Keep the trainer from installing its signal handlers (and from restoring earlier ones at its end)."""
    trainer._signal_connector.register_signal_handlers = lambda: None


def load_no_checkpoint(trainer) -> None:
    """Make the trainer's next fit or test use the model as it is: a ckpt_path of None set by the user (read by
    `_select_ckpt_path` before Lightning's SLURM rule picks an hpc_ckpt_N.ckpt of another net, or, for a fit,
    before an on-exception checkpoint callback makes it look for a "last" one, warning twice)."""
    connector = trainer._checkpoint_connector
    connector._ckpt_path, connector._user_managed = None, True


def check_internals() -> list[str]:
    """The internals above that this install lacks ('ModelCheckpoint._save_last_checkpoint', ...)."""
    import importlib

    missing = []
    for where, name in INTERNALS:
        if where == "torch.ops.aten":
            found = hasattr(torch.ops.aten, name)
        else:
            module, owner_name = where.rsplit(".", 1)
            owner = getattr(importlib.import_module(module), owner_name)
            found = hasattr(owner, name) or name in _instance_attributes(owner)
        if not found:
            missing.append(f"{where}.{name}")
    return missing


def _instance_attributes(cls) -> set[str]:
    """Attributes a class sets on its instances (`self.x = ...` in __init__), read from a fresh instance."""
    try:
        return set(vars(cls()))
    except Exception:
        return set()

"""A quiet console: one line per log message, in words alone (the run's log file keeps the times and the
loggers' names), and none of the library lines that say nothing to a user of this app. Called at job start.

The lines kept quiet are named here, by their exact text, and nowhere else (all libraries' but one of ours): a record or warning whose text starts
so is kept off the console (`QUIET_RECORDS`, the log file still has them) or dropped (`QUIET_WARNINGS`)."""

from __future__ import annotations

import logging
import warnings

ADVERTISING = "💡 Tip:"  # Lightning's suggestions of its cloud products, on every Trainer
QUIET_RECORDS = (  # log records that say nothing to the user, off the console
    "Seed set to ",  # Lightning's seed_everything: the seed is in the config (seed=)
    "GPU available: False, used: False",  # Lightning's device lines on a machine without a GPU
    "TPU available: False, using: 0 TPU cores",
    "HPU available: False, using: 0 HPUs",
    "`Trainer.fit` stopped: `max_epochs=",  # the epoch table that ends a training says how far it went
    "speed-ups: channels_last=",  # ours: what the speed switches resolved to, for the log file (docs/speed.md)
)
QUIET_WARNINGS = (  # library warnings that say nothing to the user (regular expressions of their first words)
    r"The `srun` command is available on your system but is not used",  # Lightning, on any machine with SLURM
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # torch's pytree, inside Lightning
    r"You're resuming from a checkpoint that ended before the epoch ended",  # our EpochSampler resumes exactly
    # a resume (ckpt_path=last) writes into its own checkpoints/: a fresh run into a dir of files is refused first
    r"Checkpoint directory .* exists and is not empty",
    # Lightning cannot tell whether a batch sampler of ours drops images: ShapeBatchSampler never does (tested)
    r"You are using a custom batch sampler `ShapeBatchSampler` for prediction",
)


def _not_advertising(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(ADVERTISING)


def _worth_showing(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(QUIET_RECORDS)


class ConsoleFormatter(logging.Formatter):
    """The message alone; `warning: ` (or `error: `) before those of that level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def is_console(handler: logging.Handler) -> bool:
    """Hydra's console handler (a stream to stdout or stderr), not its log file."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def quiet_console() -> None:
    """Hydra's console handler shows the message alone, without QUIET_RECORDS; no handler shows advertising.
    Called when the job starts, before its checks (their warnings read as the rest)."""
    for handler in logging.getLogger().handlers:
        if _not_advertising not in handler.filters:
            handler.addFilter(_not_advertising)
        if is_console(handler) and _worth_showing not in handler.filters:
            handler.addFilter(_worth_showing)
            handler.setFormatter(ConsoleFormatter())


def quiet_libraries() -> None:
    """Once the job has passed its checks:
    - Lightning prints its INFO lines through a handler of its own and then passes them on to Hydra's: drop
      its handler, so each line appears once, in Hydra's handlers (and in the run's log file);
    - none of QUIET_WARNINGS (among them: no "dataloader is not resumable" on a mid-epoch resume: our
      EpochSampler resumes exactly from the loop's progress (data.sampling), which Lightning cannot see)."""
    import lightning  # noqa: F401  (its packages add their own log handlers when first imported: do that first)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for text in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=text)

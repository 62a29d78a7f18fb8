"""One line per log message, and no library notice that does not apply to our runs: called at job start."""

from __future__ import annotations

import logging
import warnings

ADVERTISING = "💡 Tip:"  # Lightning's suggestions of its cloud products, on every Trainer


def _not_advertising(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(ADVERTISING)


def quiet_libraries() -> None:
    """- Lightning prints its INFO lines through a handler of its own and then passes them on to Hydra's: drop
      its handler, so each line appears once, in Hydra's format and in the run's log file;
    - no advertising;
    - no "dataloader is not resumable" on a mid-epoch resume: our EpochSampler resumes exactly from the
      loop's progress (data.sampling), which Lightning cannot see."""
    import lightning  # noqa: F401  (its packages add their own log handlers when first imported: do that first)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if _not_advertising not in handler.filters:
            handler.addFilter(_not_advertising)
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")

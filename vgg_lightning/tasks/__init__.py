"""The tasks a user runs (`task=train|eval|predict|features|transfer`), one module each, listed in `TASKS`.

A task module holds `SUMMARY` (its line in `--help`), `check(cfg)`, which refuses every value the task reads
before any work and imports no torch (the refusal comes before the seconds that importing torch and Lightning
take), and `run(cfg)`, which does the work (its heavy imports inside). `__main__` dispatches through `TASKS`;
a new task is a module and a line here.
"""

from __future__ import annotations

from types import ModuleType

from omegaconf import DictConfig

from ..data.options import check_data_settings
from ..models.choices import check_model_settings
from ..paper import figures
from ..rules import check_rules, is_int
from ..training.recipe_settings import check_trainer_settings
from . import eval as evaluate
from . import features, predict, train, transfer

TASKS: dict[str, ModuleType] = {  # task= -> its module, in the order --help lists them
    "train": train,
    "eval": evaluate,
    "features": features,
    "transfer": transfer,
    "predict": predict,
}


def task_named(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"task={name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def check(cfg: DictConfig) -> ModuleType:
    """The task of `cfg`, once every value it reads has passed its check: the net's, the data's and the
    Trainer's settings, which every task reads, then the task's own (the cheap checks first: the data folder's come last, as the
    demo set is generated there)."""
    task = task_named(cfg.task)
    if isinstance(cfg.get("paper"), str):
        figures(cfg.paper)  # the row an experiment names (a file of one's own may give figures instead)
    check_rules("", cfg, {"seed": (lambda s: is_int(s) and 0 <= s < 2**32, "an int in [0, 2^32) (0: the default)")})
    check_model_settings(cfg.model)
    check_data_settings(cfg.data)
    check_trainer_settings(cfg.trainer)
    task.check(cfg)
    return task


def summaries() -> dict[str, str]:
    """task -> what it does: the Tasks section of --help."""
    return {name: task.SUMMARY for name, task in TASKS.items()}

"""The layout of run dirs: where a run keeps its checkpoints and results, and where a reproduction plan puts
each of the paper's rows (`<out>/table3/D_jitter`)."""

from __future__ import annotations

from pathlib import Path

from .. import paper

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
RESULTS = "results.json"


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / LAST


def row_dir(out: str, row: paper.Row) -> str:
    """The run dir of a paper row in a plan's folder `out`."""
    return f"{out}/{paper.key(row)}"


def warm_start_checkpoint(experiment: str, out: str) -> str | None:
    """The checkpoint a Table 3 row starts from when the rows run in `out/table3/<row>` (None: from
    model.init). The reproduction plan and the `+sweep=table3` multirun (the `${warm_start:...}` resolver) ask
    this."""
    source = paper.parent(experiment)
    return str(last_checkpoint(row_dir(out, source))) if source else None

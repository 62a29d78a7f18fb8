"""The report's table: one row per run, the paper's top-1 / top-5 error beside ours and the difference."""

from __future__ import annotations

from ..paper import format_scale, format_test_scales
from .runs import ERRORS, Run

COLUMNS = ("run", "data", "config", "S", "Q", "protocol", "paper", "paper top-1", "paper top-5",
           "ours top-1", "ours top-5", "Δ top-1", "Δ top-5")  # fmt: skip


def _number(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        figures = run.paper or {}
        rows.append([
            run.label, run.dataset, run.config, format_scale(run.train_scale), format_test_scales(run.test_scales) or "–",
            str(run.results.get("protocol", "–")), run.paper_source or "–",
            *(_number(figures.get(k), ".1f") for k in ERRORS),
            *(_number(run.error(k), ".2f") for k in ERRORS),
            *(_number(run.difference(k), "+.2f") for k in ERRORS),
        ])  # fmt: skip
    return rows


def markdown_table(runs: list[Run]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(runs)]
    return "\n".join(lines)


CAPTION = (
    "Top-1 / top-5 classification error on the validation set, in %. Δ = ours − paper (positive: worse than "
    "the paper). S: training scale ([256;512]: scale jittering); Q: test scale(s). Runs on other data than "
    "ILSVRC-2012 have no paper figures."
)

"""The report's comparisons beyond Tables 3-6: B beside B-shallow (Sec. 4.1, the 3x3 argument) and the transfer
runs beside their Table 11 cells (Appendix B)."""

from __future__ import annotations

from .. import paper
from ..paper import format_scale, format_test_scales
from .runs import Run

TRANSFER_TASK = "transfer"


def is_transfer(run: Run) -> bool:
    return run.results.get("task") == TRANSFER_TASK


def _number(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def shallow_table(runs: list[Run]) -> str | None:
    """Each B-shallow run beside the B runs of the same data, S, Q and protocol: their top-1 errors and the gap,
    against the paper's (+7.0, centre crop). None when there is no B-shallow run."""
    finding = paper.SHALLOW_FINDING
    shallow = [r for r in runs if r.config == finding.config and r.error("top1_error") is not None]
    if not shallow:
        return None

    def setting(run: Run) -> tuple:
        return run.dataset, run.train_scale, run.test_scales, run.results.get("protocol")

    lines = [
        f"## Sec. 4.1: {finding.baseline} against {finding.config} (the 3x3 argument)",
        "",
        f"The paper: {finding.text}.",
        "",
        "| data | S | Q | protocol | B run | B top-1 | B-shallow run | B-shallow top-1 | gap | paper gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in shallow:
        twins = [r for r in runs if r.config == finding.baseline and setting(r) == setting(run)] or [None]
        for twin in twins:
            b = twin.error("top1_error") if twin else None
            gap = None if b is None else run.error("top1_error") - b
            lines.append(
                f"| {run.dataset} | {format_scale(run.train_scale)} | {format_test_scales(run.test_scales) or '–'} | "
                f"{run.results.get('protocol', '–')} | {twin.label if twin else '– (no B run)'} | {_number(b, '.2f')} | "
                f"{run.label} | {run.error('top1_error'):.2f} | {_number(gap, '+.2f')} | "
                f"+{finding.top1_error_above:.1f} |"
            )
    return "\n".join(lines)


def transfer_table(runs: list[Run]) -> str | None:
    """One row per transfer run: its figure (mean ± std over the splits) beside Table 11's cell for its nets
    and data set. None when there is no transfer run."""
    transfer = [r for r in runs if is_transfer(r)]
    if not transfer:
        return None
    lines = [
        "## Appendix B: the features on other data sets (Table 11)",
        "",
        "| run | data | nets | Q | aggregate | metric | splits | paper | ours | Δ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in transfer:
        metric = run.results.get("metric")
        ours, std = run.results.get(metric), run.results.get("std")
        cell = paper.transfer_cell(run.config, run.dataset)
        theirs = "–" if cell is None else f"{cell.value:.1f}" + (f" ± {cell.std:.1f}" if cell.std is not None else "")
        delta = None if cell is None or ours is None else ours - cell.value
        lines.append(
            f"| {run.label} | {run.dataset} | {run.config} | {format_test_scales(run.test_scales) or '–'} | "
            f"{run.results.get('aggregate', '–')} | {metric} | {len(run.results.get('splits') or [])} | {theirs} | "
            f"{_number(ours, '.2f')} ± {_number(std, '.2f')} | {_number(delta, '+.2f')} |"
        )
    lines += ["", "Mean AP (VOC) or mean class recall (Caltech), in %; Δ = ours − paper (negative: below the paper)."]
    return "\n".join(lines)

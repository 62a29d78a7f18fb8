"""`python -m vgg_lightning.report PATH... [--out DIR] [--wandb]`: our runs against the paper's tables.

Collects every results.json under the PATHs (run dirs, multirun sweep dirs, a reproduce plan's folder), matches
each run to the paper's row by config, S, Q and protocol, and writes into a new folder: report.md (one table
row per run: the paper's top-1 / top-5 error, ours, and the difference; the released nets' runs in a section
of their own), error_vs_depth.png and, when the runs logged them, training_curves.png. With --wandb the same goes into a W&B Report (online only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import one_line_errors
from .findings import is_transfer, shallow_table, transfer_table
from .markdown import CAPTION, markdown_table
from .plots import plot_curves, plot_error_vs_depth
from .released import is_released, released_table
from .runs import Run, collect, training_curve
from .wandb_report import wandb_report


def output_folder(out: Path | None) -> Path:
    """--out if it is new or empty (never overwrite a report); else a new reports/<date>_<time>[-n]."""
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise SystemExit(f"--out {out} exists and is not empty: name a new folder (a report is never overwritten)")
        out.mkdir(parents=True, exist_ok=True)
        return out
    base = Path("reports") / time.strftime("%Y-%m-%d_%H-%M-%S")
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    return folder


def write_report(runs: list[Run], out: Path, sources: list[Path]) -> tuple[str, list[Path]]:
    # transfer runs have no errors (Table 11's section has them), released nets have their own section
    ranked = [r for r in runs if not is_transfer(r) and not is_released(r)]
    sections = [s for s in (shallow_table(ranked), released_table(runs), transfer_table(runs)) if s]
    table = "\n\n".join(([markdown_table(ranked)] if ranked else []) + sections)
    curves = {run.label: training_curve(run.run_dir) for run in ranked}
    plots = [p for p in (plot_error_vs_depth(ranked, out), plot_curves(ranked, curves, out)) if p is not None]
    lines = [
        "# VGG runs against the paper",
        "",
        f"`python -m vgg_lightning.report {' '.join(map(str, sources))}`, {time.strftime('%Y-%m-%d %H:%M')}: "
        f"{len(runs)} runs, {sum(r.paper is not None for r in runs)} with paper figures.",
        "",
        *([markdown_table(ranked), "", CAPTION, ""] if ranked else []),
        *(f"{section}\n" for section in sections),
        *(f"![{p.stem.replace('_', ' ')}]({p.name})\n" for p in plots),
    ]
    (out / "report.md").write_text("\n".join(lines))
    return table, plots


@one_line_errors(code=1)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgg_lightning.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs, multirun dirs or folders holding them")
    parser.add_argument("--out", type=Path, help="the report's folder (new or empty); default reports/<date>_<time>")
    parser.add_argument("--wandb", action="store_true", help="also create a W&B Report (online only)")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such path: {', '.join(map(str, missing))}")
    runs = collect(args.paths)
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.paths))}: train or evaluate first")
    out = output_folder(args.out)
    table, plots = write_report(runs, out, args.paths)
    print(table, "", f"report: {out / 'report.md'}", *(f"plot: {p}" for p in plots), sep="\n")
    if args.wandb:
        print(wandb_report(runs, table, title=f"VGG runs against the paper ({out.name})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

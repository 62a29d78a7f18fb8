"""`python -m vgg_lightning.reproduce table3 [--dry-run] [--out DIR] [--rows A_S256,B_S256] [overrides ...]`

Runs a table of the paper (3, 4, 5, 6 or all) as the warm starts of Sec. 3.1 order it: A_S256 from random
weights; B-E at S=256 from A_S256; each S=384 net from the S=256 net of its config; each jittered net from
the S=384 one. Tables 4-6 evaluate Table 3's nets, so their plans begin with the trainings they need. Each row
runs as `python -m vgg_lightning experiment=table3/<row> hydra.run.dir=<out>/table3/<row> ...` with its
parent's last.ckpt wired in; a row whose results.json exists is skipped, and a training stopped half-way
resumes from its own last.ckpt (ckpt_path=last), so running the same command again continues a stopped plan.
Extra arguments are Hydra overrides given to every run (trainer.devices=4, data.root=..., ...).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from . import signals
from .app.run_dir import RESULTS, row_dir, warm_start_checkpoint
from .checkpoints.files import last_checkpoint
from .paper import TABLES, Row, depth, key, sources

DEFAULT_OUT = "outputs/reproduce"


def plan(table: int | str, names: list[str] | None = None) -> list[Row]:
    """The rows of `table` (all of them, or those `names`d) and every row they need, parents first: by depth
    in the warm-start tree, then in the paper's order."""
    tables = list(TABLES) if table == "all" else [int(str(table).removeprefix("table"))]
    wanted = [row for t in tables for row in TABLES[t] if names is None or row.name in names]
    unknown = set(names or ()) - {row.name for row in wanted}
    if unknown:
        choices = ", ".join(row.name for t in tables for row in TABLES[t])
        raise SystemExit(f"no row {', '.join(sorted(unknown))} in {table}; its rows are: {choices}")
    needed: dict[str, Row] = {}

    def visit(row: Row) -> None:
        for source in sources(row):
            visit(source)
        needed.setdefault(key(row), row)

    for row in wanted:
        visit(row)
    position = {key(row): i for i, row in enumerate(r for t in TABLES.values() for r in t)}
    return sorted(needed.values(), key=lambda row: (depth(row), row.table, position[key(row)]))


def command(row: Row, out: str, overrides: list[str]) -> list[str]:
    args = [f"experiment={key(row)}", f"hydra.run.dir={row_dir(out, row)}"]
    parents = sources(row)
    if row.table == 3:
        args.append("ckpt_path=last")  # a stopped training resumes; a fresh one starts from init_from
        init_from = warm_start_checkpoint(key(row), out)
        args += [f"model.init_from={init_from}"] if init_from else []
    elif len(parents) == 1:
        args.append(f"ckpt_path={last_checkpoint(row_dir(out, parents[0]))}")
    else:
        args.append(f"eval.ensemble=[{','.join(str(last_checkpoint(row_dir(out, p))) for p in parents)}]")
    return ["python", "-m", "vgg_lightning", *args, *overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgg_lightning.reproduce", description=__doc__.split("\n\n")[1])
    parser.add_argument("table", choices=[*(f"table{t}" for t in TABLES), "all"], help="the paper's table")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where the runs go (default {DEFAULT_OUT})")
    parser.add_argument("--rows", help="only these rows of the table (comma-separated), with what they need")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.devices=4")
    args = parser.parse_intermixed_args(argv)
    out = args.out.rstrip("/")
    rows = plan(args.table, args.rows.split(",") if args.rows else None)
    print(f"# {args.table}: {len(rows)} runs in warm-start order under {out}/ (a run with a results.json is skipped)")
    for row in rows:
        cmd = command(row, out, args.overrides)
        results = Path(row_dir(out, row)) / RESULTS
        if args.dry_run:
            print(("# done: " if results.exists() else "") + shlex.join(cmd))
        elif results.exists():
            print(f"# done: {key(row)} ({results})")
        else:
            print(shlex.join(cmd), flush=True)
            run = subprocess.Popen([sys.executable, *cmd[1:]], start_new_session=True)
            with signals.forwarded_to(run):  # SIGTERM to the plan stops the run it is in, which keeps its state
                code = signals.exit_status(run.wait())
            if code != 0:
                print(f"{key(row)} failed (exit {code}); the same command resumes the plan from it", file=sys.stderr)
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

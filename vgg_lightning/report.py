"""`python -m vgg_lightning.report PATH... [--out DIR] [--wandb]`: our runs against the paper's tables.

Collects every results.json under the PATHs (run dirs, multirun sweep dirs, a reproduce plan's folder), matches
each run to the paper's row by config, S, Q and protocol, and writes into a new folder: report.md (one table
row per run: the paper's top-1 / top-5 error, ours, and the difference), error_vs_depth.png and, when the runs
logged them, training_curves.png. With --wandb the same goes into a W&B Report (online only).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import paper
from .tracking import read_wandb_run, wandb_mode, wandb_run_files

IMAGENET = "imagenet"
STEP = "trainer/global_step"  # the x axis Lightning gives W&B
ERRORS = {"top1_error": "top-1", "top5_error": "top-5"}  # results.json key -> what the paper calls it


@dataclass(frozen=True)
class Run:
    """One results.json, and the paper's figures for it when it reproduces a row."""

    label: str  # where it lies, relative to the folder the report was asked about
    run_dir: Path
    results: dict
    row: paper.Row | None

    @property
    def config(self) -> str:
        return str(self.results.get("config"))

    @property
    def train_scale(self):
        scale = self.results.get("train_scale")
        return tuple(scale) if isinstance(scale, list) else scale

    @property
    def test_scales(self) -> tuple:
        return tuple(self.results.get("test_scales") or ())

    @property
    def dataset(self) -> str:
        return self.results.get("dataset") or IMAGENET

    @property
    def paper(self) -> dict | None:
        """The paper's {top1_error, top5_error}: the matched row's, else what the run's experiment gave."""
        if self.row is not None:
            return {"top1_error": self.row.top1_error, "top5_error": self.row.top5_error}
        return self.results.get("paper")

    @property
    def paper_source(self) -> str:
        if self.row is not None:
            return f"Table {self.row.table}"
        if self.paper:  # figures the experiment file attached, though the settings match no row exactly
            return self.results.get("experiment") or "experiment"
        return ""

    def error(self, which: str) -> float | None:
        return self.results.get(which)

    def difference(self, which: str) -> float | None:
        if self.paper is None or self.paper.get(which) is None or self.error(which) is None:
            return None
        return self.error(which) - self.paper[which]


def match(results: dict) -> paper.Row | None:
    """The paper's row for a run on ILSVRC-2012 with these settings; runs on other data reproduce no row."""
    if results.get("num_classes", 1000) != 1000 or (results.get("dataset") or IMAGENET) != IMAGENET:
        return None
    try:
        return paper.find_row(
            results["config"], results["train_scale"], results.get("test_scales") or (), results.get("protocol", "dense")
        )
    except (KeyError, TypeError):
        return None


def collect(paths: list[Path]) -> list[Run]:
    """Every results.json under the paths (a results.json itself is accepted too), sorted as the paper sorts."""
    runs = []
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("results.json"))
        # labels start at the folder named: "<sweep>/0", "<sweep>/1" rather than a bare "0", "1"
        base = (root.parent if root.is_file() else root).resolve().parent
        for file in files:
            try:
                results = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as error:
                print(f"skipping {file}: {error}", file=sys.stderr)
                continue
            label = str(file.parent.resolve().relative_to(base))
            runs.append(Run(label, file.parent, results, match(results)))
    return sorted(runs, key=sort_key)


def config_order(config: str) -> int:
    order = list(paper.PARAMETERS)
    return order.index(config) if config in order else len(order)


def sort_key(run: Run) -> tuple:
    """ImageNet first, then by config and S as Table 3 runs, single Q before several (Table 3 before 4)."""
    scale = run.train_scale
    return (run.dataset != IMAGENET, run.dataset, config_order(run.config), run.config,
            scale if isinstance(scale, int) else sum(scale) / 2 if scale else 0,
            len(run.test_scales), run.test_scales, str(run.results.get("protocol")), run.label)  # fmt: skip


# -- the table --------------------------------------------------------------------------------------------
COLUMNS = ("run", "data", "config", "S", "Q", "protocol", "paper", "paper top-1", "paper top-5",
           "ours top-1", "ours top-5", "Δ top-1", "Δ top-5")  # fmt: skip


def format_s(scale) -> str:
    """256 -> '256'; (256, 512) -> '[256;512]', as the paper writes a jittered S."""
    if isinstance(scale, tuple):
        return f"[{scale[0]};{scale[1]}]"
    return "–" if scale is None else str(scale)


def _number(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        figures = run.paper or {}
        rows.append([
            run.label, run.dataset, run.config, format_s(run.train_scale), ",".join(map(str, run.test_scales)) or "–",
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


# -- training curves: the CSV logger's metrics.csv, else the W&B run files -------------------------------
# Keyed by training step (SGD iterations, as the paper counts them): Lightning labels a validation run after
# fit() stopped at max_steps inside an epoch with the next epoch's number, the step is always right.
def _csv_curve(run_dir: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            for line in csv.DictReader(f):
                if line.get("step") not in (None, ""):
                    values = {k: float(v) for k, v in line.items() if v not in (None, "") and k != "step"}
                    steps.setdefault(int(float(line["step"])), {}).update(values)
    return steps


def _wandb_curve(run_dir: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    for path in wandb_run_files(run_dir):  # oldest first: a resumed job's values replace the first's
        for logged in read_wandb_run(path)["history"]:
            if isinstance(logged.get(STEP), (int, float)):
                values = {k: v for k, v in logged.items() if isinstance(v, (int, float)) and not k.startswith("_")}
                steps.setdefault(int(logged[STEP]), {}).update(values)
    return steps


def training_curve(run_dir: Path) -> dict[int, dict]:
    """{step: {metric: value}} for the steps the run logged at (val/top1_error, train/loss_epoch, ...)."""
    return _csv_curve(run_dir) or _wandb_curve(run_dir)


# -- the W&B Report -------------------------------------------------------------------------------------
def wandb_targets(runs: list[Run]) -> dict[tuple[str | None, str], list[str]]:
    """{(entity, project): [run ids]} of the runs that logged to W&B (the id kept in their run dir)."""
    from omegaconf import OmegaConf

    from .tracking import RUN_ID_FILE

    targets: dict[tuple[str | None, str], list[str]] = {}
    for run in runs:
        id_file, config = run.run_dir / RUN_ID_FILE, run.run_dir / ".hydra" / "config.yaml"
        if not id_file.exists():
            continue
        logger = (OmegaConf.load(config).get("logger") or {}).get("wandb") or {} if config.exists() else {}
        key = (logger.get("entity"), logger.get("project") or "vgg-lightning")
        targets.setdefault(key, []).append(id_file.read_text().strip())
    return targets


def wandb_report(runs: list[Run], table: str, title: str) -> str:
    """Create the W&B Report when online (one per project); otherwise say what it would create."""
    targets = wandb_targets(runs)
    if not targets:
        return "W&B Report: none of these runs logged to W&B (logger=wandb), so there is nothing to report there"
    plan = [
        f"W&B Report {title!r} in {entity + '/' if entity else ''}{project}: the table above, and for its "
        f"{len(ids)} runs ({', '.join(ids)}) a line plot of val/top1_error against the step and a bar chart of "
        "results.top1_error"
        for (entity, project), ids in targets.items()
    ]
    if wandb_mode() != "online":
        return "\n".join(
            ["offline: no W&B Report created. Once logged in (`wandb login`) and synced (`wandb sync`), it would be:"]
            + plan
        )
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        return "W&B Report not created: it needs the wandb-workspaces package (pip install 'wandb[workspaces]')"
    urls = []
    for (entity, project), ids in targets.items():
        runset = wr.Runset(entity=entity, project=project, name="these runs", filters=[ws.Metric("ID").isin(ids)])
        report = wr.Report(
            entity=entity,
            project=project,
            title=title,
            description=CAPTION,
            blocks=[
                wr.MarkdownBlock(text=table),
                wr.PanelGrid(
                    runsets=[runset],
                    panels=[
                        wr.LinePlot(x=STEP, y=["val/top1_error"], title="val top-1 error (%)"),
                        wr.BarPlot(metrics=["results.top1_error"], title="final top-1 error (%)"),
                    ],
                ),
            ],
        )
        report.save()
        urls.append(f"W&B Report: {report.url}")
    return "\n".join(urls)


# -- the folder and the command line --------------------------------------------------------------------
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
    from .plots import plot_curves, plot_error_vs_depth

    table = markdown_table(runs)
    curves = {run.label: training_curve(run.run_dir) for run in runs}
    plots = [p for p in (plot_error_vs_depth(runs, out), plot_curves(runs, curves, out)) if p is not None]
    lines = [
        "# VGG runs against the paper",
        "",
        f"`python -m vgg_lightning.report {' '.join(map(str, sources))}`, {time.strftime('%Y-%m-%d %H:%M')}: "
        f"{len(runs)} runs, {sum(r.paper is not None for r in runs)} with paper figures.",
        "",
        table,
        "",
        CAPTION,
        "",
        *(f"![{p.stem.replace('_', ' ')}]({p.name})\n" for p in plots),
    ]
    (out / "report.md").write_text("\n".join(lines))
    return table, plots


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

"""The runs a report is about: every results.json under the paths asked about, matched to the paper's row
(only runs on ILSVRC-2012 reproduce one), sorted as the paper sorts, with their training curves."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import paper
from .wandb_files import read_wandb_run, wandb_run_files

IMAGENET = paper.ILSVRC_2012
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
        """The paper's {top1_error, top5_error}: the matched row's, else what the run's experiment gave (for
        a run on ILSVRC-2012 only: an older results.json may hold figures for a run on other data)."""
        if self.row is not None:
            return {"top1_error": self.row.top1_error, "top5_error": self.row.top5_error}
        if not paper.on_ilsvrc2012(self.results.get("dataset"), self.results.get("num_classes")):
            return None
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
    if not paper.on_ilsvrc2012(results.get("dataset"), results.get("num_classes")):
        return None
    try:
        return paper.find_row(
            results["config"],
            results["train_scale"],
            results.get("test_scales") or (),
            results.get("protocol", "dense"),
        )
    except (KeyError, TypeError):
        return None


# what every row shows: a classification run's errors, or a transfer run's metric (task=transfer, Table 11)
REQUIRED = {"config": str, "top1_error": (int, float), "top5_error": (int, float)}
REQUIRED_TRANSFER = {"config": str, "metric": str}


def malformed(results) -> str | None:
    """Why a parsed results.json cannot be a row of the report (None: it can)."""
    if not isinstance(results, dict):
        return f"not a results file (a JSON {type(results).__name__}, expected an object)"
    required = REQUIRED_TRANSFER if results.get("task") == "transfer" else REQUIRED
    wrong = [key for key, kind in required.items() if not isinstance(results.get(key), kind)]
    return f"not a results file (missing or malformed: {', '.join(wrong)})" if wrong else None


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
            except RecursionError:  # json's parser recurses once per level: a crafted file of 100,000 levels
                print(f"skipping {file}: not a results file (nested too deeply to parse)", file=sys.stderr)
                continue
            except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
                print(f"skipping {file}: {error}", file=sys.stderr)
                continue
            if problem := malformed(results):
                print(f"skipping {file}: {problem}", file=sys.stderr)
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


# -- training curves: the CSV logger's metrics.csv, else TensorBoard's event files, else the W&B run files --
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


def _tensorboard_curve(run_dir: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    folders = sorted({path.parent for path in run_dir.glob("tensorboard/version_*/events.out.tfevents.*")})
    if not folders:
        return steps
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    except ImportError:
        print(f"skipping the TensorBoard curves of {run_dir}: pip install tensorboard to read them", file=sys.stderr)
        return steps
    for folder in folders:  # every event file of a version folder (fit's, test's), in the order written
        events = EventAccumulator(str(folder), size_guidance={SCALARS: 0})  # 0: keep every value
        events.Reload()
        for tag in events.Tags()["scalars"]:
            for scalar in events.Scalars(tag):
                steps.setdefault(int(scalar.step), {})[tag] = float(scalar.value)
    return steps


def training_curve(run_dir: Path) -> dict[int, dict]:
    """{step: {metric: value}} for the steps the run logged at (val/top1_error, train/loss_epoch, ...)."""
    return _csv_curve(run_dir) or _tensorboard_curve(run_dir) or _wandb_curve(run_dir)

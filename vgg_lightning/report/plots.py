"""The report's figures: validation error against depth beside the paper's, and training curves (PNG, Agg)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .. import paper  # noqa: E402
from ..models.tables import CONFIGS  # noqa: E402
from ..models.vgg import weight_layers  # noqa: E402
from ..paper import format_scale  # noqa: E402
from .runs import ERRORS, Run  # noqa: E402

DPI = 150
CURVES = {
    "val/top1_error": "validation top-1 error (%)",
    "train/loss_epoch": "training loss (cross-entropy, epoch mean)",
}


def save(fig, title: str, path: Path) -> Path:
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)  # a report over many sweeps would otherwise hold every figure in memory
    return path


def data_title(run: Run) -> str:
    if run.dataset == "imagenet":
        return "ILSVRC-2012"
    classes = run.results.get("num_classes")
    return f"{run.dataset} data" + (f" ({classes} classes)" if classes else "")


def _paper_series(members: list[Run], scale) -> dict[str, dict[str, paper.Row]]:
    """The paper's curves for one training scale: those of the tables and protocols our runs matched, else
    Table 3 (dense evaluation at a single Q)."""
    keys = {(run.row.table, run.row.protocol) for run in members if run.row is not None} or {(3, "dense")}
    series = {}
    for table, protocol in sorted(keys):
        rows = {r.config: r for r in paper.TABLES[table] if r.train_scale == scale and r.protocol == protocol}
        if rows:
            series[f"paper, Table {table} ({protocol.replace('_', ' & ')})"] = rows
    return series


def plot_error_vs_depth(runs: list[Run], out: Path) -> Path | None:
    """One row of panels per (data, training scale), top-1 and top-5 error against config A..E."""
    panels: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.config in CONFIGS and run.error("top1_error") is not None:
            panels[(run.dataset, run.train_scale)].append(run)
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), squeeze=False)
    for ((dataset, scale), members), row_axes in zip(panels.items(), axes):
        series = _paper_series(members, scale) if dataset == "imagenet" else {}
        shown = {run.config for run in members} | {c for rows in series.values() for c in rows}
        configs = [c for c in CONFIGS if c in shown]
        x = {c: i for i, c in enumerate(configs)}
        ours: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
        for run in members:
            q = ",".join(map(str, run.test_scales))
            ours[f"ours ({run.results.get('protocol', '?')}, Q={q})"][run.config].append(run)
        repeated = any(len(group) > 1 for by_config in ours.values() for group in by_config.values())
        for ax, (key, name) in zip(row_axes, ERRORS.items()):
            for label, by_config in ours.items():
                cs = [c for c in configs if c in by_config]
                ax.plot([x[c] for c in cs], [mean(r.error(key) for r in by_config[c]) for c in cs],
                        marker="o", linewidth=2, label=label + (", mean" if repeated else ""))  # fmt: skip
                repeats = [(x[c], r.error(key)) for c in cs for r in by_config[c] if len(by_config[c]) > 1]
                if repeats:
                    ax.scatter(*zip(*repeats), s=12, color="grey", alpha=0.6, label="ours, single runs")
            for label, rows in series.items():
                cs = [c for c in configs if c in rows]
                ax.plot([x[c] for c in cs], [getattr(rows[c], key) for c in cs],
                        marker="s", linestyle="--", label=label)  # fmt: skip
            ax.set_xticks(range(len(configs)), [f"{c}\n{weight_layers(c)} layers" for c in configs])
            ax.set_xlim(-0.5, len(configs) - 0.5)
            ax.set_xlabel("configuration (weight layers)")
            ax.set_ylabel(f"{name} error (%)")
            ax.set_title(f"{data_title(members[0])}, S = {format_scale(scale)}: {name} error")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return save(fig, "Validation error against depth", out / "error_vs_depth.png")


def plot_curves(runs: list[Run], curves: dict[str, dict[int, dict]], out: Path) -> Path | None:
    """Validation top-1 error and training loss against the training step, one line per run that logged them."""
    metrics = [m for m in CURVES if any(m in values for c in curves.values() for values in c.values())]
    if "val/top1_error" not in metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.8 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for run in runs:
            points = sorted((step, v[metric]) for step, v in curves.get(run.label, {}).items() if metric in v)
            if points:
                label = f"{run.config}, S = {format_scale(run.train_scale)} ({run.label})"
                ax.plot(*zip(*points), marker="o" if len(points) <= 20 else None, label=label)
        ax.set_xlabel("training iterations (SGD steps)")
        ax.set_ylabel(CURVES[metric])
        ax.set_title(CURVES[metric].split(" (")[0].capitalize())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.margins(x=0.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, "Training curves (validation at the end of each epoch)", out / "training_curves.png")

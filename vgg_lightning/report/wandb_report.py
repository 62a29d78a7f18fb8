"""The report as a W&B Report (online only): the table, and the runs' curves and final errors as panels."""

from __future__ import annotations

from ..tracking.wandb_runs import RUN_ID_FILE, wandb_mode
from .markdown import CAPTION
from .runs import STEP, Run


def wandb_targets(runs: list[Run]) -> dict[tuple[str | None, str], list[str]]:
    """{(entity, project): [run ids]} of the runs that logged to W&B (the id kept in their run dir)."""
    from omegaconf import OmegaConf

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

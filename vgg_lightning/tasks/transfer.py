"""task=transfer transfer.features=FILE (Appendix B): linear SVMs on the fixed descriptors of task=features
(`evaluation.svm`), results.json beside Table 11's cell."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from .. import paper
from ..evaluation.protocol_settings import check_transfer_settings

log = logging.getLogger(__name__)
SUMMARY = "linear SVMs on the descriptors, as Table 11"


def check(cfg: DictConfig) -> None:
    check_transfer_settings(cfg.transfer)


def run(cfg: DictConfig) -> dict:
    import time

    from ..app.results import job_results, save_results
    from ..evaluation.svm import read_features, run_protocol

    started = time.time()
    check(cfg)
    data = read_features(cfg.transfer.features)
    found = run_protocol(data, cfg.transfer)
    config, dataset = str(data["config"]), str(data["dataset"])
    cell = paper.transfer_cell(config, dataset)
    results = job_results(
        cfg,
        started,
        config=config,
        dataset=dataset,
        num_classes=len(data["classes"]),
        test_scales=data["scales"].tolist(),
        aggregate=str(data["aggregate"]),
        features=str(cfg.transfer.features),
        images=int(len(data["features"])),
        **found,
        paper=None if cell is None else {cell.metric: cell.value, "std": cell.std},
    )
    path = save_results(results)
    log.info("%s %.2f%% ± %.2f over %d split(s) -> %s", found["metric"], found[found["metric"]], found["std"],
             len(found["splits"]), path)  # fmt: skip
    return results

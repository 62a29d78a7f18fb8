"""task=eval: test trained weights (a checkpoint, an ensemble of them, or torchvision's) with a protocol of
the paper's Sec. 3.2 (eval=center|dense|multicrop|dense_multicrop, eval.scales=[...]), write results.json."""

from __future__ import annotations

from omegaconf import DictConfig

from ..checkpoints.files import weights_paths
from ..data.layout import checked_layout, layout_settings
from ..evaluation.protocol_settings import EVAL_SPLITS, check_eval_settings
from .from_weights import check_classes, check_weights_named, from_checkpoints, take_data_set

SUMMARY = "test trained weights with a protocol of Sec. 3.2"


def check(cfg: DictConfig) -> None:
    """The protocol; the weights (their scaling, their net, and the data set they were trained on when the
    command line names none: `tasks.from_weights`); the split the task's datamodule reads, and its classes."""
    check_eval_settings(cfg.eval)
    if cfg.get("weights"):
        check_weights_named(cfg)
        checked_layout(**layout_settings(cfg.data, EVAL_SPLITS))
        return
    headers = from_checkpoints(cfg, cfg.get("ckpt_path"), cfg.eval.get("ensemble"), "eval")
    path = weights_paths(cfg.get("ckpt_path"), cfg.eval.get("ensemble"))[0]
    take_data_set(cfg, path, headers[0])
    check_classes(path, headers[0], checked_layout(**layout_settings(cfg.data, EVAL_SPLITS)))


def load_nets(cfg: DictConfig, num_classes: int) -> tuple[list, list, list[str]]:
    """(nets, their training scales, where their weights came from) for this eval run: torchvision's
    (`weights=torchvision`), or the checkpoints of ckpt_path and eval.ensemble. The net is the checkpoint's:
    only a config or width given on the command line must match it."""
    from ..app.job import asked_model_keys
    from ..checkpoints.nets import checked_checkpoints, net_from_checkpoint, torchvision_net

    if cfg.weights:
        net, path = torchvision_net(cfg.model.config, cfg.weights, cfg.weights_path, cfg.data.normalize)
        if net.num_classes != num_classes:
            raise ValueError(f"torchvision's weights have {net.num_classes} classes, the data {num_classes}")
        return [net], [None], [path]
    paths = weights_paths(cfg.ckpt_path, cfg.eval.ensemble)
    checkpoints = checked_checkpoints(paths, cfg.model, num_classes, asked_model_keys(), cfg.get("task", "eval"))
    nets, scales = zip(*map(net_from_checkpoint, checkpoints))
    return list(nets), list(scales), paths


def run(cfg: DictConfig) -> dict | None:
    import time

    from hydra.utils import instantiate

    from ..app.results import write_results
    from ..app.trainer import build_trainer
    from ..evaluation.evaluator import run_evaluation, test_scales

    started = time.time()
    datamodule = instantiate(cfg.data, splits=list(EVAL_SPLITS))
    num_classes = datamodule.num_classes
    nets, train_scales, sources = load_nets(cfg, num_classes)
    unique_scales = [s for i, s in enumerate(train_scales) if s not in train_scales[:i]]
    job = {
        "config": "+".join(dict.fromkeys(net.config for net in nets)),  # D+E for an ensemble
        "train_scale": unique_scales[0] if len(unique_scales) == 1 else unique_scales,
        "test_scales": test_scales(cfg.eval, datamodule),
    }
    trainer = build_trainer(cfg, job)
    tested = run_evaluation(trainer, nets, datamodule, cfg.eval, cfg.model.channels_last)
    return write_results(
        trainer,
        cfg,
        started,
        config=job["config"],
        num_classes=num_classes,
        train_scale=job["train_scale"],
        weights=sources,
        **tested,
    )

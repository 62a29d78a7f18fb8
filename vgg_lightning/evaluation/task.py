"""task=eval: test trained weights (a checkpoint, an ensemble of them, or torchvision's) with a protocol of
the paper's Sec. 3.2 (eval=center|dense|multicrop|dense_multicrop, eval.scales=[...]), write results.json."""

from __future__ import annotations

import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from ..models import VGG, from_torchvision, torchvision_weights_path
from ..runtime.checkpoints import (
    CheckpointError,
    check_checkpoint,
    net_from_checkpoint,
    read_checkpoint,
    read_vgg_checkpoint,
)
from ..runtime.results import write_results
from ..runtime.trainer import build_trainer
from .evaluator import run_evaluation, test_scales


def load_nets(cfg: DictConfig, num_classes: int) -> tuple[list[VGG], list, list[str]]:
    """(nets, their training scales, where their weights came from) for this eval run."""
    if cfg.weights:
        if cfg.weights != "torchvision":
            raise ValueError(f"weights={cfg.weights!r}: the only choice is torchvision (or ckpt_path=... for our own)")
        if cfg.data.normalize != "torchvision":
            raise ValueError("torchvision's weights expect its mean/std input scaling: add data.normalize=torchvision")
        path = torchvision_weights_path(cfg.model.config, cfg.weights_path)
        net = from_torchvision(read_checkpoint(path), cfg.model.config)
        if net.num_classes != num_classes:
            raise ValueError(f"torchvision's weights have {net.num_classes} classes, the data {num_classes}")
        return [net], [None], [path]
    paths = [str(p) for p in [cfg.ckpt_path, *(cfg.eval.ensemble or [])] if p]
    if not paths:
        raise CheckpointError(
            "task=eval needs the weights to test: ckpt_path=<run dir>/checkpoints/last.ckpt, an ensemble "
            "eval.ensemble=[a.ckpt,b.ckpt], or torchvision's: model=D weights=torchvision data.normalize=torchvision"
        )
    # one net must be the one this run names; an ensemble may mix configs (D+E). Each file is read once.
    if len(paths) == 1:
        checkpoints = [check_checkpoint(paths[0], cfg.model, num_classes)]
    else:
        checkpoints = [read_vgg_checkpoint(path, num_classes) for path in paths]
    nets, scales = zip(*map(net_from_checkpoint, checkpoints))
    return list(nets), list(scales), paths


def evaluate(cfg: DictConfig) -> dict | None:
    started = time.time()
    datamodule = instantiate(cfg.data, splits=["val"])  # a val-only root (prepare --splits val) is enough
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

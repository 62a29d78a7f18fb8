"""task=eval: test trained weights (a checkpoint, an ensemble of them, or torchvision's) with a protocol of
the paper's Sec. 3.2 (eval=center|dense|multicrop|dense_multicrop, eval.scales=[...]), write results.json."""

from __future__ import annotations

import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from ..app.job import asked_model_keys
from ..app.results import write_results
from ..app.trainer import build_trainer
from ..checkpoints.files import weights_paths
from ..checkpoints.read import (
    CheckpointError,
    check_checkpoint,
    net_from_checkpoint,
    read_checkpoint,
    read_vgg_checkpoint,
)
from ..models import VGG, from_torchvision, torchvision_weights_path
from .evaluator import run_evaluation, test_scales
from .protocol_settings import EVAL_SPLITS


def torchvision_net(cfg: DictConfig, normalize: str | None = None) -> tuple[VGG, str]:
    """`weights=torchvision`: torchvision's vgg11/13/16/19 for model=A|B|D|E, and the file it came from."""
    if cfg.weights != "torchvision":
        raise ValueError(f"weights={cfg.weights!r}: the only choice is torchvision (or ckpt_path=... for our own)")
    if (normalize or cfg.data.normalize) != "torchvision":
        raise ValueError("torchvision's weights expect its mean/std input scaling: add data.normalize=torchvision")
    path = torchvision_weights_path(cfg.model.config, cfg.weights_path)
    return from_torchvision(read_checkpoint(path), cfg.model.config), path


def load_checkpoints(cfg: DictConfig, num_classes: int | None = None) -> tuple[list[dict], list[str]]:
    """The checked checkpoints of ckpt_path and eval.ensemble, and their paths. The net is the checkpoint's:
    only a config or width given on the command line must match it."""
    paths = weights_paths(cfg.ckpt_path, cfg.eval.ensemble)
    if not paths:
        raise CheckpointError(
            f"task={cfg.get('task', 'eval')} needs the weights to use: ckpt_path=<run dir>/checkpoints/last.ckpt, an ensemble "
            "eval.ensemble=[a.ckpt,b.ckpt], or torchvision's: model=D weights=torchvision data.normalize=torchvision"
        )
    # one net must be the one this run names; an ensemble may mix configs (D+E). Each file is read once.
    if len(paths) == 1:
        return [check_checkpoint(paths[0], cfg.model, num_classes, keys=asked_model_keys())], paths
    return [read_vgg_checkpoint(path, num_classes) for path in paths], paths


def load_nets(cfg: DictConfig, num_classes: int) -> tuple[list[VGG], list, list[str]]:
    """(nets, their training scales, where their weights came from) for this eval run."""
    if cfg.weights:
        net, path = torchvision_net(cfg)
        if net.num_classes != num_classes:
            raise ValueError(f"torchvision's weights have {net.num_classes} classes, the data {num_classes}")
        return [net], [None], [path]
    checkpoints, paths = load_checkpoints(cfg, num_classes)
    nets, scales = zip(*map(net_from_checkpoint, checkpoints))
    return list(nets), list(scales), paths


def evaluate(cfg: DictConfig) -> dict | None:
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

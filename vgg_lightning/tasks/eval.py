"""task=eval: test trained weights (a checkpoint, an ensemble, or released weights: torchvision's, the authors'
Caffe nets) with a protocol of the paper's Sec. 3.2 (eval=center|dense|multicrop|dense_multicrop,
eval.scales=[...]), write results.json."""

from __future__ import annotations

from omegaconf import DictConfig

from ..checkpoints.weights import run_nets
from ..data.layout import checked_layout, layout_settings
from ..evaluation.protocol_settings import EVAL_SPLITS, check_eval_settings
from .from_weights import check_classes, from_weights, take_data_set

SUMMARY = "test trained weights with a protocol of Sec. 3.2"


def check(cfg: DictConfig) -> None:
    """The protocol; the weights (their scaling, their net, and the data set they were trained on when the
    command line names none: `tasks.from_weights`); the split the task's datamodule reads, and its classes."""
    check_eval_settings(cfg.eval)
    first = from_weights(cfg, cfg.eval.get("ensemble"), "eval")  # a checkpoint of ours: (path, header)
    if first is not None:  # its data set, when the command line names none
        take_data_set(cfg, *first)
    folders = checked_layout(**layout_settings(cfg.data, EVAL_SPLITS))
    if first is not None:  # the data's classes are the net's
        check_classes(*first, folders)


def load_nets(cfg: DictConfig, num_classes: int) -> tuple[list, list, list[str]]:
    """(nets, their training scales, where their weights came from) for this eval run: released weights
    (`weights=`) or ckpt_path's, then eval.ensemble's. A checkpoint's net is its own: only a config or width
    given on the command line must match it."""
    from ..app.job import asked_model_keys
    from ..checkpoints.nets import task_nets

    named = run_nets(cfg, cfg.eval.ensemble, cfg.get("task", "eval"))
    used = task_nets(named, cfg.model, num_classes, asked_model_keys(), cfg.data.normalize)
    return [u.net for u in used], [u.train_scale for u in used], [u.path for u in used]


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
        weights_source=[net.source for net in nets],  # where released weights came from (None: trained here)
        **tested,
    )

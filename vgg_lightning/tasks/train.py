"""task=train: build from the config, fit with the paper's recipe, test with the experiment's protocol, write
results.json."""

from __future__ import annotations

import logging
from typing import NamedTuple

from omegaconf import DictConfig

from ..checkpoints.files import check_files_exist
from ..checkpoints.weights import check_named_nets, named_nets
from ..data.layout import SPLITS, checked_layout, layout_settings
from ..evaluation.protocol_settings import check_eval_settings
from ..paper import parent
from ..training.recipe_settings import check_optim_settings, check_start
from .from_weights import take_start

log = logging.getLogger(__name__)
SUMMARY = "train a net with the paper's recipe, then test it (default)"


def check(cfg: DictConfig) -> None:
    check_eval_settings(cfg.eval)  # the test that ends the training
    check_optim_settings(cfg.optim)
    check_start(cfg.get("weights"), cfg.model.get("init_from"))  # before their files are looked for
    if cfg.get("weights"):  # released weights to start from (torchvision's, the authors' Caffe nets)
        check_named_nets(starting_weights(cfg), cfg.data.normalize)
    # ckpt_path=last names no file: it means this run dir's newest checkpoint, or a fresh start when there is
    # none (checkpoints.read.resume_path)
    check_files_exist([None if cfg.get("ckpt_path") == "last" else cfg.get("ckpt_path"), cfg.model.get("init_from")])
    take_start(cfg)  # the net, its scaling: a fine-tune's are those of the weights it starts from
    checked_layout(**layout_settings(cfg.data, SPLITS))  # the splits the datamodule reads


def warn_if_cold(experiment: str | None) -> None:
    """A Table 3 row run on its own without the warm start the paper gave it."""
    source = parent(experiment)
    if source is not None:
        log.warning(
            "%s starts, in the paper, from table3/%s's weights: pass model.init_from=<its checkpoints/last.ckpt>, "
            "or run the whole chain with python -m vgg_lightning.reproduce table3",
            experiment,
            source.name,
        )


def starting_weights(cfg: DictConfig) -> list:
    """weights=torchvision|caffe as named: the net of model's config that training starts from."""
    return named_nets(cfg.weights, cfg.get("weights_path"), None, (), cfg.model.config, "train")


class Start(NamedTuple):
    """What the net starts from: a net's state dict, its spec (config, classes, width), its file, and where
    released weights came from (`VGG.source`, which the run's checkpoints then carry; None for ours)."""

    state: dict
    spec: dict
    path: str
    source: dict | None = None


def initial_weights(cfg: DictConfig) -> Start | None:
    """What the net starts from: a checkpoint of ours (model.init_from) or released weights (weights=torchvision,
    weights=caffe); None: model.init. Read and checked before any work."""
    from ..checkpoints.nets import net_state, task_nets
    from ..checkpoints.read import checkpoint_spec, read_vgg_checkpoint

    check_start(cfg.weights, cfg.model.init_from)
    if cfg.weights:
        (start,) = task_nets(starting_weights(cfg), cfg.model, normalize=cfg.data.normalize)
        return Start(start.net.state_dict(), start.net.spec(), start.path, start.net.source)
    if cfg.model.init_from:
        source = read_vgg_checkpoint(cfg.model.init_from)
        return Start(net_state(source), checkpoint_spec(source), cfg.model.init_from)
    return None


def run(cfg: DictConfig) -> dict | None:
    import os
    import time

    import lightning as L
    from hydra.utils import instantiate

    from ..app.job import group_choice, output_dir, plain_config
    from ..app.results import write_results
    from ..app.trainer import build_trainer
    from ..checkpoints.read import check_checkpoint, check_not_past, resume_path
    from ..compat import load_no_checkpoint
    from ..data.classes import class_names
    from ..evaluation.evaluator import run_evaluation
    from ..models.warm_start import warm_start
    from ..training.global_batch import accumulate_to_global_batch
    from ..training.module import VGGClassifier

    started = time.time()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    num_classes = datamodule.num_classes  # validates the data folders (and writes the demo set) before any work
    ckpt_path = resume_path(cfg.ckpt_path, output_dir())
    if ckpt_path is not None:
        check_not_past(ckpt_path, check_checkpoint(ckpt_path, cfg.model, num_classes), cfg.trainer.max_epochs)
    classes, wnids = class_names(datamodule.classes())
    initial = initial_weights(cfg)
    module = VGGClassifier(
        model=plain_config(cfg.model),
        optim=plain_config(cfg.optim),
        num_classes=num_classes,
        train_scale=datamodule.scale_label,
        classes=classes,
        wnids=wnids,
        normalize=datamodule.normalizer.normalize,
        test_scale=datamodule.test_scale,
        weights_source=initial and initial.source,
        dataset=datamodule.name,
        data_root=os.path.abspath(datamodule.root),
    )
    if initial and ckpt_path is None:
        warm_start(module.net, initial.state, initial.spec, initial.path)
    elif not initial:
        warn_if_cold(group_choice("experiment"))
    else:
        log.info("resuming from %s: the initial weights (%s) were applied when this run began", ckpt_path, initial.path)
    job = {"config": cfg.model.config, "train_scale": datamodule.scale_label, "test_scales": [datamodule.test_scale]}
    trainer = build_trainer(cfg, job)
    accumulate_to_global_batch(trainer, datamodule)
    if ckpt_path is None:  # a fresh start: no file picked by Lightning's own rules (SLURM's hpc_ckpt_N, a "last")
        load_no_checkpoint(trainer)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    # the final weights (last.ckpt), as the paper tests its nets; `center` is what validation measures
    tested = run_evaluation(trainer, [module.net], datamodule, cfg.eval, cfg.model.channels_last)
    print_epochs(trainer, num_classes)
    return write_results(trainer, cfg, started, num_classes=num_classes, train_scale=datamodule.scale_label, **tested)


def print_epochs(trainer, num_classes: int) -> None:
    """The epoch table (training.callbacks.EpochTable), on rank 0, chance beside the first error."""
    from ..training.callbacks import EpochTable

    table = next((c for c in trainer.callbacks if isinstance(c, EpochTable)), None)
    if table is not None and table.rows and trainer.is_global_zero:
        log.info("%s", table.table(chance=100 * (1 - 1 / num_classes)))

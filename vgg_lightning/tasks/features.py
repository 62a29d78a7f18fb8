"""task=features (Appendix B): the paper's image descriptor for every image of a data set, in features.npz.

The nets are our checkpoints (`ckpt_path` and `features.ensemble`, stacked) or released weights
(`weights=torchvision`, `weights=caffe weights_path=...`, and `.caffemodel` files in `features.ensemble`: the
authors' D & E); the descriptor is `evaluation.descriptors`'. A stopped job run again in the same run
dir (`hydra.run.dir=<it>`) computes only the images no shard holds; a finished one's dir is refused, as any
finished run's (`app.run_dir.check_fresh_run`). Rank 0 then joins the shards into
features.npz (`features` N x D float32, `labels`, `paths`, `splits`, `classes` and the settings).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ..checkpoints.weights import run_nets
from ..data.readers import read_labelled
from ..evaluation.protocol_settings import check_aggregate, check_features_settings
from .from_weights import from_weights

log = logging.getLogger(__name__)
SUMMARY = "fc7 descriptors of a data set (Appendix B)"


def check(cfg: DictConfig) -> None:
    check_features_settings(cfg.features)
    # the reader checks the layout as it lists the images (again in the run)
    read_labelled(cfg.features.dataset, cfg.features.root, cfg.features.splits)
    # the nets' input scaling is theirs (data.normalize): a command line saying otherwise is refused
    from_weights(cfg, cfg.features.get("ensemble"), "features")


def feature_nets(cfg: DictConfig) -> tuple[list, list[str]]:
    """The nets whose descriptors are stacked (released weights, weights=, or ckpt_path's, then
    features.ensemble's), each rebuilt as it was trained (fc8 is not used), and their files."""
    from ..checkpoints.nets import task_nets

    named = run_nets(cfg, cfg.features.ensemble, "features")
    used = task_nets(named, cfg.model, keys=(), normalize=cfg.data.normalize)
    return [u.net for u in used], [u.path for u in used]


def run(cfg: DictConfig) -> dict | None:
    import time

    from ..app.job import output_dir
    from ..app.run_dir import FEATURES
    from ..app.trainer import build_trainer
    from ..compat import load_no_checkpoint
    from ..evaluation.descriptors import SHARDS, FeatureExtractor, Shards, write_features
    from ..speed import on_here

    started = time.time()
    settings = cfg.features
    aggregate = check_aggregate(settings.aggregate)
    scales = [int(q) for q in settings.scales]
    images = read_labelled(settings.dataset, settings.root, settings.splits)  # the layout is checked first
    nets, sources = feature_nets(cfg)
    config = "+".join(net.config for net in nets)
    run_dir = output_dir()  # a finished run's features.npz is never replaced (app.run_dir.check_fresh_run)
    trainer = build_trainer(cfg, {"config": config, "train_scale": None, "test_scales": scales})
    shard_settings = {"dataset": images.name, "images": len(images), "scales": scales, "aggregate": aggregate,
                      "nets": sources, "normalize": cfg.data.normalize}  # fmt: skip
    shards = Shards(run_dir / SHARDS, shard_settings)
    shards.check_settings(trainer.is_global_zero)
    done = shards.done()
    todo = [i for i in range(len(images)) if i not in done]
    if done:
        log.info("resuming: %d of %d images already in %s", len(done), len(images), shards.folder)
    extractor = FeatureExtractor(
        nets,
        images,
        shards,
        todo,
        scales,
        aggregate,
        normalize=cfg.data.normalize,
        batch_size=settings.batch_size,
        shard_size=settings.shard_size,
        num_workers=cfg.data.num_workers,
        on_corrupt=cfg.data.on_corrupt,
        channels_last=on_here(cfg.model.channels_last),
    )
    if todo:
        load_no_checkpoint(trainer)  # the nets given, not a SLURM hpc_ckpt_N.ckpt of the run dir
        trainer.test(extractor, verbose=False)
    trainer.strategy.barrier()  # every rank's shards are on disk
    if not trainer.is_global_zero:
        return None
    return write_features(run_dir / FEATURES, images, shards, config, sources, scales, aggregate, started)

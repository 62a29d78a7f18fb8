"""task=features (Appendix B): the paper's image descriptor for every image of a data set, in features.npz.

The nets are our checkpoints (`ckpt_path` and `features.ensemble`, stacked) or torchvision's
(`weights=torchvision`); the descriptor is `evaluation.descriptors`'. A stopped job run again in the same run
dir (`hydra.run.dir=<it>`) computes only the images no shard holds. Rank 0 then joins the shards into
features.npz (`features` N x D float32, `labels`, `paths`, `splits`, `classes` and the settings).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ..checkpoints.files import needed_weights, weights_paths
from ..data.readers import read_labelled
from ..evaluation.protocol_settings import check_aggregate
from .from_weights import check_weights_named, from_checkpoints

log = logging.getLogger(__name__)
SUMMARY = "fc7 descriptors of a data set (Appendix B)"


def check(cfg: DictConfig) -> None:
    check_aggregate(cfg.features.aggregate)
    # the reader checks the layout as it lists the images (again in the run)
    read_labelled(cfg.features.dataset, cfg.features.root, cfg.features.splits)
    if cfg.get("weights"):
        check_weights_named(cfg)
    else:  # the nets' input scaling is theirs (data.normalize): a command line saying otherwise is refused
        from_checkpoints(cfg, cfg.get("ckpt_path"), cfg.features.get("ensemble"), "features")


def feature_nets(cfg: DictConfig) -> tuple[list, list[str]]:
    """The nets whose descriptors are stacked: torchvision's ImageNet weights (`weights=torchvision`), or our
    checkpoints (`ckpt_path` and `features.ensemble`), each rebuilt as it was trained (fc8 is not used)."""
    from ..checkpoints.nets import net_from_checkpoint, torchvision_net
    from ..checkpoints.read import read_vgg_checkpoint

    if cfg.weights:
        net, path = torchvision_net(cfg.model.config, cfg.weights, cfg.weights_path, cfg.data.normalize)
        if net.num_classes != 1000:
            raise ValueError(f"torchvision's weights have {net.num_classes} classes, the data 1000")
        return [net], [path]
    paths = needed_weights(weights_paths(cfg.ckpt_path, cfg.features.ensemble), "features")
    return [net_from_checkpoint(read_vgg_checkpoint(path))[0] for path in paths], paths


def run(cfg: DictConfig) -> dict | None:
    import time

    from ..app.job import output_dir
    from ..app.trainer import build_trainer
    from ..compat import skip_checkpoint_on_test
    from ..evaluation.descriptors import FEATURES, SHARDS, FeatureExtractor, Shards, write_features
    from ..speed import on_here

    started = time.time()
    settings = cfg.features
    aggregate = check_aggregate(settings.aggregate)
    scales = [int(q) for q in settings.scales]
    images = read_labelled(settings.dataset, settings.root, settings.splits)  # the layout is checked first
    nets, sources = feature_nets(cfg)
    config = "+".join(net.config for net in nets)
    run_dir = output_dir()
    if (run_dir / FEATURES).is_file():
        log.info("%s exists: nothing to compute (a new run dir computes them anew)", run_dir / FEATURES)
        return None
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
        skip_checkpoint_on_test(trainer)  # the nets given, not a SLURM hpc_ckpt_N.ckpt of the run dir
        trainer.test(extractor, verbose=False)
    trainer.strategy.barrier()  # every rank's shards are on disk
    if not trainer.is_global_zero:
        return None
    return write_features(run_dir, images, shards, config, sources, scales, aggregate, started)

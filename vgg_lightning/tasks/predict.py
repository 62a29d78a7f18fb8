"""task=predict: classify images by name with any test protocol of Sec. 3.2.

`python -m vgg_lightning task=predict ckpt_path=CKPT inputs=PATH` (PATH: an image, a folder, or a glob), or
released weights instead of a checkpoint (ImageNet's names): `weights=torchvision model=D`, or the authors'
net, `weights=caffe weights_path=VGG_ILSVRC_16_layers.caffemodel`. The net, its class names, its input scaling
and its test scale Q come from the checkpoint (or the released weights' kind), so no data root is needed. The
images go through the evaluation's own loader (batches of equal rescaled shapes, never padded) and protocols (`eval=dense`,
`eval.scales=[...]`, `eval.ensemble=[...]`), so a prediction is what task=eval scores, image by image. It
writes `predictions.csv` into the run dir (`evaluation.predictor`) and prints the first rows.
"""

from __future__ import annotations

import glob
import logging
import os

from omegaconf import DictConfig

from ..checkpoints.files import CheckpointError
from ..checkpoints.weights import run_nets
from ..data.layout import image_files, is_image_file, utf8_name
from ..evaluation.protocol_settings import check_eval_settings
from ..rules import check_rules, is_int
from .from_weights import from_weights

log = logging.getLogger(__name__)
SUMMARY = "classify images (inputs=...): predictions.csv"


def input_files(inputs: str | None) -> list[str]:
    """The image files that `inputs=` names: one image, every image under a folder (sorted; the data's own
    walk, `data.layout.image_files`), or a glob. A name that is not valid UTF-8 is refused, as every reader
    refuses it."""
    if not inputs:
        raise ValueError("task=predict needs the images: inputs=photo.jpg, inputs=photos/ or inputs='photos/*.jpg'")
    inputs = os.path.expanduser(str(inputs))
    if os.path.isdir(inputs):
        found = list(image_files(inputs))
    else:
        found = [inputs] if os.path.isfile(inputs) else glob.glob(inputs, recursive=True)
    files = sorted(utf8_name(path) for path in found if os.path.isfile(path) and is_image_file(path))
    if not files:
        raise ValueError(
            f"inputs={inputs!r}: no image files there (an image, a folder of images or a glob such as "
            f"'photos/*.jpg'; image files end in .jpg, .jpeg, .png, ...)"
        )
    return files


def check(cfg: DictConfig) -> None:
    check_eval_settings(cfg.eval)  # the protocol, Q and batch bounds the prediction uses
    check_rules("", cfg, {"top_k": (lambda k: is_int(k) and k >= 1, "an int >= 1 (classes per image, 5)")})
    # the net, its classes, scaling and Q come from the checkpoint: a command line saying otherwise is refused
    from_weights(cfg, cfg.eval.get("ensemble"), "predict")
    input_files(cfg.get("inputs"))


def predictor_for(cfg: DictConfig):
    """The Predictor of this run (released weights, weights=, or ckpt_path's checkpoint, then eval.ensemble's),
    its nets' training S and where their weights came from."""
    from ..app.job import asked_model_keys
    from ..checkpoints.nets import task_nets
    from ..evaluation.predictor import Predictor

    protocol = dict(protocol=cfg.eval.protocol, crop_batch=cfg.eval.crop_batch)
    named = run_nets(cfg, cfg.eval.ensemble, "predict")
    used = task_nets(named, cfg.model, keys=asked_model_keys(), normalize=cfg.data.normalize)
    ours = [u.checkpoint for u in used if u.checkpoint is not None]
    nets, paths = [u.net for u in used], [u.path for u in used]
    if ours and len(ours) < len(used):  # whose class names would the table show?
        raise CheckpointError(f"task=predict: {', '.join(paths)} mix checkpoints of ours and released weights")
    if ours:
        predictor = Predictor.from_checkpoints(ours, cfg.eval.scales, nets=nets, **protocol)
        return predictor, ours[0]["hyper_parameters"].get("train_scale"), paths
    return Predictor.from_released(nets, used[0].kind, cfg.eval.scales, **protocol), used[0].train_scale, paths


def run(cfg: DictConfig) -> dict | None:
    from ..app.job import command_line_keys, output_dir
    from ..app.run_dir import PREDICTIONS
    from ..app.trainer import build_trainer
    from ..evaluation.evaluator import Evaluator
    from ..evaluation.predictor import prediction_rows, print_table, write_predictions
    from ..speed import on_here

    files = input_files(cfg.inputs)
    predictor, train_scale, sources = predictor_for(cfg)
    job = {"config": "+".join(dict.fromkeys(n.config for n in predictor.nets)), "train_scale": train_scale}
    # a prediction is no experiment: it logs nowhere unless its command line names a logger (logger=wandb)
    logs = any(key.startswith("logger") for key in command_line_keys() or ())
    trainer = build_trainer(cfg, {**job, "test_scales": predictor.scales}, logs, devices=1, num_nodes=1)
    evaluator = Evaluator(
        predictor.nets,
        "",
        predictor.protocol,
        predictor.scales,
        normalize=predictor.normalize,
        batch_size=cfg.eval.batch_size,
        crop_batch=predictor.crop_batch,
        num_workers=cfg.data.num_workers,
        on_corrupt=cfg.data.on_corrupt,
        channels_last=on_here(cfg.model.channels_last),
        samples=[(path, -1) for path in files],
    )
    outputs = trainer.predict(evaluator)
    rows = prediction_rows(predictor, files, outputs, cfg.top_k)
    path = str(output_dir() / PREDICTIONS)
    write_predictions(rows, path)
    print_table(rows, path)
    log.info("%s of %d image(s) by %s (%s) -> %s", predictor.protocol, len(rows), job["config"], sources[0], path)
    return {"predictions": path, "images": len(rows)}

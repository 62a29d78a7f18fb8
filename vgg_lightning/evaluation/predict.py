"""task=predict: classify images by name with any test protocol of Sec. 3.2.

`python -m vgg_lightning task=predict ckpt_path=CKPT inputs=PATH` (PATH: an image, a folder, or a glob), or
`weights=torchvision model=D` instead of a checkpoint (ImageNet's names). The net, its class names, its input
scaling and its test scale Q come from the checkpoint, so no data root is needed. The images go through the
evaluation's own loader (batches of equal rescaled shapes, never padded) and protocols (`eval=dense`,
`eval.scales=[...]`, `eval.ensemble=[...]`), so a prediction is what task=eval scores, image by image. It
writes `predictions.csv` into the run dir (`path`, `class`, `probability`, then `class_2`, `probability_2`,
... up to `top_k`) and prints the first rows.

From Python (`Predictor`): load a checkpoint, preprocess an image as its run did, predict (see the README).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from ..app.job import output_dir
from ..app.trainer import build_trainer
from ..checkpoints.read import CheckpointError, checkpoint_classes, net_from_checkpoint, read_vgg_checkpoint
from ..data.classes import IMAGENET_CLASSES, class_names
from ..data.layout import is_image_file
from ..data.scales import default_test_scale
from ..data.transforms import BatchNormalizer
from ..models import VGG
from ..speed import switched_on
from .evaluator import Evaluator
from .loader import ScaledImages
from .protocols import DEFAULT_CROP_BATCH, check_protocol, posterior
from .task import load_checkpoints, torchvision_net

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.csv"
TORCHVISION_TEST_SCALE = 256  # torchvision's own val rescale (Resize(256), then the centre 224)
SHOWN = 10  # rows of the printed table


def input_files(inputs: str | None) -> list[str]:
    """The image files that `inputs=` names: one image, every image under a folder (sorted), or a glob."""
    if not inputs:
        raise ValueError("task=predict needs the images: inputs=photo.jpg, inputs=photos/ or inputs='photos/*.jpg'")
    inputs = os.path.expanduser(str(inputs))
    if os.path.isdir(inputs):
        found = [os.path.join(top, name) for top, _, names in os.walk(inputs) for name in names]
    else:
        found = [inputs] if os.path.isfile(inputs) else glob.glob(inputs, recursive=True)
    files = sorted(path for path in found if os.path.isfile(path) and is_image_file(path))
    if not files:
        raise ValueError(
            f"inputs={inputs!r}: no image files there (an image, a folder of images or a glob such as "
            f"'photos/*.jpg'; image files end in .jpg, .jpeg, .png, ...)"
        )
    return files


@dataclass
class Predictor:
    """Nets with what their run knew: the class names, the input scaling (`normalize`), the test scales Q and
    the protocol that turns an image into a posterior."""

    nets: list[VGG]
    classes: list[str]
    normalize: str = "paper"
    scales: Sequence[int] = (256,)
    protocol: str = "center"
    crop_batch: int = DEFAULT_CROP_BATCH

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        self.scales = [int(q) for q in self.scales]
        self.normalizer = BatchNormalizer(self.normalize)
        for net in self.nets:
            net.eval()

    @classmethod
    def from_checkpoints(cls, checkpoints: Sequence[Mapping], scales: Sequence[int] | None = None, **kw) -> Predictor:
        """An ensemble's checkpoints (one for a single net), checked with `checkpoints.read`."""
        classes = checkpoint_classes(checkpoints[0])
        if any(checkpoint_classes(other) != classes for other in checkpoints[1:]):
            raise CheckpointError("the nets of an ensemble must share their classes (they were trained on other data)")
        run = checkpoints[0]["hyper_parameters"]
        q = run.get("test_scale") or default_test_scale(run.get("train_scale") or TORCHVISION_TEST_SCALE)
        nets = [net_from_checkpoint(checkpoint)[0] for checkpoint in checkpoints]
        return cls(nets, classes, run.get("normalize") or "paper", list(scales or [q]), **kw)

    @classmethod
    def from_checkpoint(cls, path: str, **kw) -> Predictor:
        return cls.from_checkpoints([read_vgg_checkpoint(str(path))], **kw)

    @classmethod
    def from_torchvision(cls, net: VGG, scales: Sequence[int] | None = None, **kw) -> Predictor:
        """torchvision's weights (`from_torchvision`): ImageNet's class names, its mean/std scaling, Q = 256."""
        names = class_names()[0] if net.num_classes == IMAGENET_CLASSES else list(map(str, range(net.num_classes)))
        return cls([net], names, "torchvision", list(scales or [TORCHVISION_TEST_SCALE]), **kw)

    def preprocess(self, path: str) -> list[torch.Tensor]:
        """One image as the run's val images were read: rescaled (uncropped) to each Q, normalised; one
        (1, 3, H, W) float tensor per Q."""
        item = ScaledImages("", self.scales, on_corrupt="error", samples=[(str(path), -1)])[0]
        return [self.normalizer(image[None]) for image in item["images"]]

    @torch.no_grad()
    def posterior(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, classes): the protocol's posterior, averaged over the nets and scales as task=eval does."""
        return posterior(self.nets, images, self.protocol, self.crop_batch)

    def top_k(self, probs: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, the k likeliest (class name, probability), likeliest first."""
        values, indices = probs.topk(min(int(k), probs.shape[1]), dim=1)
        return [
            [(self.classes[i], p) for p, i in zip(row_values, row_indices)]
            for row_values, row_indices in zip(values.tolist(), indices.tolist())
        ]

    def __call__(self, path: str, k: int = 5) -> list[tuple[str, float]]:
        return self.top_k(self.posterior(self.preprocess(path)), k)[0]


def predictor_for(cfg: DictConfig) -> tuple[Predictor, object, list[str]]:
    """The Predictor of this run (ckpt_path, eval.ensemble or weights=torchvision), its nets' training S and
    where their weights came from."""
    protocol = dict(protocol=cfg.eval.protocol, crop_batch=cfg.eval.crop_batch)
    if cfg.weights:
        net, path = torchvision_net(cfg, normalize="torchvision")
        return Predictor.from_torchvision(net, cfg.eval.scales, **protocol), None, [path]
    checkpoints, paths = load_checkpoints(cfg)
    predictor = Predictor.from_checkpoints(checkpoints, cfg.eval.scales, **protocol)
    return predictor, checkpoints[0]["hyper_parameters"].get("train_scale"), paths


def prediction_rows(predictor: Predictor, files: Sequence[str], outputs: list, k: int) -> list[dict]:
    """One row per readable image, in the order of `files`: path, class, probability, class_2, ..."""
    probs: dict[int, torch.Tensor] = {}
    for batch in outputs:
        for group_probs, indices in batch:
            probs.update(zip(indices.tolist(), group_probs))
    if len(probs) < len(files):
        log.warning(
            "%d of %d files could not be read: left out of %s", len(files) - len(probs), len(files), PREDICTIONS
        )
    order = sorted(probs)
    top = predictor.top_k(torch.stack([probs[i] for i in order]), k) if order else []
    rows = []
    for index, classes in zip(order, top):
        row = {"path": files[index]}
        for rank, (name, p) in enumerate(classes, start=1):
            suffix = "" if rank == 1 else f"_{rank}"
            row[f"class{suffix}"], row[f"probability{suffix}"] = name, round(p, 6)
        rows.append(row)
    return rows


def write_predictions(rows: list[dict], path: str) -> None:
    """predictions.csv, atomically (a reader never sees half a file)."""
    staging = f"{path}.tmp"
    with open(staging, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path", "class", "probability"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(staging, path)


def print_table(rows: list[dict], path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} image(s) -> {path}")
    for column in ("image", "class", "probability", "2nd", "probability"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for row in rows[:SHOWN]:
        second = [row.get("class_2", ""), f"{row['probability_2']:.3f}" if "probability_2" in row else ""]
        table.add_row(os.path.basename(row["path"]), row["class"], f"{row['probability']:.3f}", *second)
    if len(rows) > SHOWN:
        table.caption = f"... and {len(rows) - SHOWN} more in {PREDICTIONS}"
    Console().print(table)


def predict(cfg: DictConfig) -> dict | None:
    files = input_files(cfg.inputs)
    predictor, train_scale, sources = predictor_for(cfg)
    job = {"config": "+".join(dict.fromkeys(n.config for n in predictor.nets)), "train_scale": train_scale}
    trainer = build_trainer(cfg, {**job, "test_scales": predictor.scales}, devices=1, num_nodes=1)
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
        channels_last=switched_on(cfg.model.channels_last),
        samples=[(path, -1) for path in files],
    )
    outputs = trainer.predict(evaluator)
    rows = prediction_rows(predictor, files, outputs, cfg.top_k)
    path = str(output_dir() / PREDICTIONS)
    write_predictions(rows, path)
    print_table(rows, path)
    log.info("%s of %d image(s) by %s (%s) -> %s", predictor.protocol, len(rows), job["config"], sources[0], path)
    return {"predictions": path, "images": len(rows)}

"""The Predictor: nets with what their run knew (class names, input scaling, Q), classifying images by name
with any test protocol of Sec. 3.2, image by image as task=eval scores them; and predictions.csv, the table
task=predict writes (`path`, `class`, `probability`, then `class_2`, `probability_2`, ... up to `top_k`).

From Python: load a checkpoint, preprocess an image as its run did, predict (see the README).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..checkpoints.files import CheckpointError
from ..checkpoints.nets import net_from_checkpoint
from ..checkpoints.read import checkpoint_classes, read_vgg_checkpoint
from ..checkpoints.weights import KINDS
from ..data.classes import IMAGENET_CLASSES, class_names
from ..data.options import default_test_scale
from ..data.transforms import BatchNormalizer
from ..models import VGG
from .loader import ScaledImages
from .protocols import DEFAULT_CROP_BATCH, check_protocol, posterior

log = logging.getLogger(__name__)
TORCHVISION_TEST_SCALE = KINDS["torchvision"].test_scale  # its own val rescale (Resize(256), then the centre 224)
SHOWN = 10  # rows of the printed table


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
    def from_checkpoints(
        cls, checkpoints: Sequence[Mapping], scales: Sequence[int] | None = None, nets: list | None = None, **kw
    ) -> Predictor:
        """An ensemble's checkpoints (one for a single net), checked with `checkpoints.read` (`nets`: their nets,
        when already built)."""
        classes = checkpoint_classes(checkpoints[0])
        if any(checkpoint_classes(other) != classes for other in checkpoints[1:]):
            raise CheckpointError("the nets of an ensemble must share their classes (they were trained on other data)")
        run = checkpoints[0]["hyper_parameters"]
        q = run.get("test_scale") or default_test_scale(run.get("train_scale") or TORCHVISION_TEST_SCALE)
        nets = nets or [net_from_checkpoint(checkpoint)[0] for checkpoint in checkpoints]
        return cls(nets, classes, run.get("normalize") or "paper", list(scales or [q]), **kw)

    @classmethod
    def from_checkpoint(cls, path: str, **kw) -> Predictor:
        return cls.from_checkpoints([read_vgg_checkpoint(str(path))], **kw)

    @classmethod
    def from_released(cls, nets: Sequence[VGG], kind: str, scales: Sequence[int] | None = None, **kw) -> Predictor:
        """Released weights of one kind (`checkpoints.weights.KINDS`: torchvision's, the authors' Caffe nets):
        ImageNet's class names, and the input scaling and Q of their kind (256 for torchvision's, 384 for the
        authors')."""
        count = nets[0].num_classes
        names = class_names()[0] if count == IMAGENET_CLASSES else list(map(str, range(count)))
        spec = KINDS[kind]
        return cls(list(nets), names, spec.normalize, list(scales or [spec.test_scale]), **kw)

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


def prediction_rows(predictor: Predictor, files: Sequence[str], outputs: list, k: int) -> list[dict]:
    """One row per readable image, in the order of `files`: path, class, probability, class_2, ..."""
    probs: dict[int, torch.Tensor] = {}
    for batch in outputs:
        for group_probs, indices in batch:
            probs.update(zip(indices.tolist(), group_probs))
    if len(probs) < len(files):
        log.warning(
            "%d of %d files could not be read: left out of the predictions", len(files) - len(probs), len(files)
        )
    order = sorted(probs)
    unfinished = [files[i] for i in order if not bool(torch.isfinite(probs[i]).all())]
    if unfinished:
        raise ValueError(
            f"the net's probabilities are not finite (NaN or inf) for {len(unfinished)} image(s), e.g. {unfinished[0]}: "
            "its outputs overflow; no predictions written"
        )
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
    # UTF-8 whatever the locale; a class name that is not (kept by a checkpoint from before the data walk refused
    # such names) is written escaped (caf\udce9) rather than failing the whole file
    with open(staging, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
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
        table.caption = f"... and {len(rows) - SHOWN} more in {os.path.basename(path)}"
    Console().print(table)

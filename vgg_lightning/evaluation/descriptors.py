"""The paper's image descriptor (Appendix B), for every image of a data set.

For each net and each Q: rescale the image so its smaller side is Q, run the fully-convolutional net densely up
to fc7 (after its ReLU; fc8 left out: `VGG.feature_map`), average the map globally to one 4096-D vector, and
average that with the flipped image's. Over several Q the vectors are averaged (`features.aggregate=average`)
or stacked (`stack`); several nets are stacked; the result is L2-normalised.

`FeatureExtractor` runs it with `trainer.test` over evaluation's loader (batched by shape, never padded), so
any number of devices share the set without repeats; each rank writes its descriptors in `Shards`, which a
stopped job run again resumes from; `write_features` joins them into features.npz.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..compat import set_test_bar_title
from ..data.labelled import LabelledImages
from ..data.transforms import BatchNormalizer
from ..models import VGG
from .loader import ScaledImages, shape_loader
from .protocol_settings import check_aggregate

log = logging.getLogger(__name__)
SHARDS = "feature_shards"


def pooled_fc7(net: VGG, x: torch.Tensor) -> torch.Tensor:
    """(N, 4096): the fc7 map averaged over its positions, averaged with the flipped image's (in float32, as
    bf16 autocast leaves the map in bf16)."""
    pooled = net.feature_map(torch.cat([x, x.flip(-1)])).float().mean(dim=(2, 3))
    original, flipped = pooled.chunk(2)
    return (original + flipped) / 2


def descriptor(nets: Sequence[VGG], images: Sequence[torch.Tensor], aggregate: str = "average") -> torch.Tensor:
    """(N, D), L2-normalised rows. `images` holds the same N images rescaled to each Q, normalised. D is 4096
    per net (`average`) or 4096 x len(images) per net (`stack`); the nets' parts are stacked in their order."""
    check_aggregate(aggregate)
    parts = []
    for net in nets:
        per_scale = [pooled_fc7(net, x) for x in images]
        parts.append(torch.stack(per_scale).mean(dim=0) if aggregate == "average" else torch.cat(per_scale, dim=1))
    return F.normalize(torch.cat(parts, dim=1), dim=1)


class Shards:
    """`<run dir>/feature_shards/shard-<first index>.npz`: (indices, descriptors) as each rank computed them,
    written atomically. The first index names a shard uniquely: no image is computed twice."""

    def __init__(self, folder: Path, settings: dict) -> None:
        self.folder = folder
        self.settings = settings

    def check_settings(self, is_writer: bool) -> None:
        """Shards are only resumed under the settings they were computed with."""
        path = self.folder / "settings.json"
        if path.is_file():
            found = json.loads(path.read_text())
            if found != self.settings:
                changed = ", ".join(k for k in self.settings if found.get(k) != self.settings[k])
                raise ValueError(
                    f"{self.folder} holds the shards of other settings ({changed} differ): run in a new run dir, "
                    f"or remove that folder"
                )
        elif is_writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.settings, indent=1))

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz"))

    def done(self) -> set[int]:
        return {int(i) for path in self.files() for i in np.load(path)["indices"]}

    def write(self, indices: list[int], features: list[np.ndarray]) -> None:
        if not indices:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"shard-{min(indices):09d}.npz"
        staging = path.with_suffix(".tmp")
        with open(staging, "wb") as f:
            np.savez(f, indices=np.array(indices, dtype=np.int64), features=np.concatenate(features))
        os.replace(staging, path)

    def join(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices found, in order; their descriptors) over every shard."""
        indices, features = [], []
        for path in self.files():
            with np.load(path) as shard:
                indices.append(shard["indices"])
                features.append(shard["features"])
        indices, features = np.concatenate(indices), np.concatenate(features)
        order = np.argsort(indices)
        return indices[order], features[order]


class FeatureExtractor(L.LightningModule):
    """`trainer.test(extractor)` computes the descriptors of the images in `todo` and writes them in shards."""

    def __init__(
        self,
        nets: Sequence[VGG],
        images: LabelledImages,
        shards: Shards,
        todo: Sequence[int],
        scales: Sequence[int],
        aggregate: str = "average",
        normalize: str = "paper",
        batch_size: int = 8,
        shard_size: int = 512,
        num_workers: int = 0,
        on_corrupt: str = "skip",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.aggregate = check_aggregate(aggregate)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.nets = nn.ModuleList(net.to(memory_format=self.memory_format) for net in nets)
        self.normalizer = BatchNormalizer(normalize)
        self.dataset = ScaledImages("", scales, "", on_corrupt, samples=[(p, 0) for p in images.paths])
        self.shards, self.todo = shards, list(todo)
        self.batch_size, self.shard_size, self.num_workers = int(batch_size), int(shard_size), int(num_workers)
        self._indices: list[int] = []
        self._features: list[np.ndarray] = []

    def test_dataloader(self):
        world = (self.trainer.global_rank, self.trainer.world_size)
        return shape_loader(self.dataset, self.batch_size, self.num_workers, *world, indices=self.todo)

    def on_test_epoch_start(self) -> None:
        self._started, self._seen = time.perf_counter(), 0

    def test_step(self, batch: dict, batch_idx: int) -> None:
        for group in batch["groups"]:
            images = [self.normalizer(x).contiguous(memory_format=self.memory_format) for x in group["images"]]
            self._features.append(descriptor(self.nets, images, self.aggregate).cpu().numpy())
            self._indices += group["index"].tolist()
            self._seen += len(group["index"])
        if len(self._indices) >= self.shard_size:
            self._flush()

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        rate = self._seen * self.trainer.world_size / max(time.perf_counter() - self._started, 1e-9)
        scales = ",".join(map(str, self.dataset.scales))
        set_test_bar_title(self.trainer.progress_bar_callback, f"features Q={scales} {rate:.1f} img/s")

    def on_test_epoch_end(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self.shards.write(self._indices, self._features)
        self._indices, self._features = [], []


def write_features(path: Path, images: LabelledImages, shards: Shards, config: str, sources: list[str],
                   scales: list[int], aggregate: str, started: float) -> dict:  # fmt: skip
    indices, features = shards.join()
    missing = len(images) - len(indices)
    if missing:
        log.warning("%d of %d images could not be read and have no descriptor (see the warnings)", missing, len(images))
    staging = path.with_suffix(".tmp")
    with open(staging, "wb") as f:
        np.savez(
            f,
            features=features.astype(np.float32),
            labels=images.labels[indices],
            paths=np.array(images.paths)[indices],
            splits=images.splits[indices],
            classes=np.array(images.classes),
            dataset=np.array(images.name),
            config=np.array(config),
            nets=np.array(sources),
            scales=np.array(scales),
            aggregate=np.array(aggregate),
        )
    os.replace(staging, path)
    shutil.rmtree(shards.folder)  # all in features.npz now (the shards of a large set would double its size)
    log.info(
        "features: %d images x %d dims (%s, Q=%s, %s) in %.0f s -> %s",
        *features.shape, config, scales, aggregate, time.time() - started, path,
    )  # fmt: skip
    return {"features": str(path), "images": int(features.shape[0]), "dims": int(features.shape[1])}
